import { useCallback, useEffect, useState } from "react";
import { api, type PluginInfo } from "../lib/api";
import { errorText, useStore } from "../store";

export function SystemScreen() {
  const { models, modelsError, reloadCatalog } = useStore();
  const [plugins, setPlugins] = useState<PluginInfo[] | null>(null);
  const [version, setVersion] = useState<string>("");
  const [error, setError] = useState<string | null>(null);
  const load = useCallback(() => {
    reloadCatalog();
    Promise.all([api.plugins(), api.version()])
      .then(([p, v]) => {
        setPlugins(p);
        setVersion(`invokeai-core ${v.version} · invokeai-web ${v.web_version}`);
        setError(null);
      })
      .catch((e) => setError(errorText(e)));
  }, [reloadCatalog]);
  useEffect(load, [load]);

  return (
    <div className="system">
      <div className="toolbar">
        <span className="muted">{version}</span>
        <span className="spacer" />
        <button onClick={load}>Refresh</button>
      </div>
      {error && (
        <p className="error-text" role="alert">
          {error}
        </p>
      )}
      <h2>Plugins</h2>
      <div className="table-wrap">
        <table className="items" data-testid="plugins-table">
          <thead>
            <tr>
              <th>Plugin</th>
              <th>Version</th>
              <th>Status</th>
              <th>Nodes</th>
              <th>Services</th>
              <th>Problem</th>
            </tr>
          </thead>
          <tbody>
            {plugins?.map((p) => (
              <tr key={p.name} data-status={p.status}>
                <td>
                  {p.name}
                  {p.dist && p.dist !== p.name ? <span className="muted"> ({p.dist})</span> : null}
                  {p.builtin && <span className="pill">built-in</span>}
                </td>
                <td>{p.version ?? "—"}</td>
                <td>
                  <span className={`pill s-${p.status === "loaded" ? "completed" : p.status === "failed" ? "failed" : "canceled"}`}>{p.status}</span>
                </td>
                <td title={p.nodes.join(", ")}>{p.nodes.length}</td>
                <td>{p.services.join(", ") || "—"}</td>
                <td className="details">
                  {p.error && <div className="error-text">{p.error}</div>}
                  {p.routes_error && <div className="error-text">routes: {p.routes_error}</div>}
                  {p.hint && <div className="muted">{p.hint}</div>}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
      <h2>Models</h2>
      {modelsError && <p className="muted">{modelsError}</p>}
      {models && models.length === 0 && !modelsError && (
        <p className="muted">
          No models installed: <code>invokeai models create-demo</code> or <code>invokeai models add PATH</code>.
        </p>
      )}
      {models && models.length > 0 && (
        <div className="table-wrap">
          <table className="items" data-testid="models-table">
            <thead>
              <tr>
                <th>Name</th>
                <th>Base</th>
                <th>Format</th>
                <th>Path</th>
                <th>Description</th>
              </tr>
            </thead>
            <tbody>
              {models.map((m) => (
                <tr key={m.name}>
                  <td>{m.name}</td>
                  <td>{String(m.base ?? "—")}</td>
                  <td>{String(m.format ?? m.type ?? "—")}</td>
                  <td className="details">{String(m.path ?? "")}</td>
                  <td className="details">{String(m.description ?? "")}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
    </div>
  );
}
