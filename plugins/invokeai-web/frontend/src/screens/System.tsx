import { useCallback, useEffect, useState, type FormEvent } from "react";
import { api, type PluginInfo } from "../lib/api";
import { errorText, useStore } from "../store";

/** Install a model from a path on the server's machine: a diffusers folder or a .safetensors file. */
function AddModel({ onAdded }: { onAdded: () => void }) {
  const { notify } = useStore();
  const [path, setPath] = useState("");
  const [name, setName] = useState("");
  const [prediction, setPrediction] = useState("");
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const submit = (e: FormEvent) => {
    e.preventDefault();
    setBusy(true);
    setError(null);
    api
      .addModel({ path: path.trim(), ...(name.trim() ? { name: name.trim() } : {}), ...(prediction ? { prediction_type: prediction } : {}) })
      .then((m) => {
        notify(`Installed ${m.name} (${String(m.base ?? "")})`);
        setPath("");
        setName("");
        onAdded();
      })
      .catch((err) => setError(errorText(err)))
      .finally(() => setBusy(false));
  };
  return (
    <form className="card add-model" onSubmit={submit} aria-labelledby="add-model-title">
      <h3 id="add-model-title">Add a model</h3>
      <label>
        Path on the server
        <input value={path} onChange={(e) => setPath(e.target.value)} placeholder="/models/sd15 or /models/model.safetensors" required data-testid="model-path" />
      </label>
      <label>
        Name (optional)
        <input value={name} onChange={(e) => setName(e.target.value)} data-testid="model-name" />
      </label>
      <label>
        Prediction type
        <select value={prediction} onChange={(e) => setPrediction(e.target.value)}>
          <option value="">from the model</option>
          <option value="epsilon">epsilon</option>
          <option value="v_prediction">v_prediction</option>
        </select>
      </label>
      <button type="submit" disabled={busy || !path.trim()}>
        {busy ? "Installing…" : "Install"}
      </button>
      {error && (
        <p className="error-text" role="alert">
          {error}
        </p>
      )}
    </form>
  );
}

export function SystemScreen() {
  const { models, modelsError, reloadCatalog, notify } = useStore();
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
      {models && !modelsError && <AddModel onAdded={reloadCatalog} />}
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
                <th />
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
                  <td>
                    <button
                      aria-label={`Remove ${m.name}`}
                      title="Forget the model (its files stay)"
                      onClick={() =>
                        api
                          .removeModel(m.name)
                          .then(() => {
                            notify(`Removed ${m.name} (its files stay)`);
                            reloadCatalog();
                          })
                          .catch((e) => notify(errorText(e), "error"))
                      }
                    >
                      Remove
                    </button>
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
    </div>
  );
}
