import { useCallback, useEffect, useRef, useState } from "react";
import { api, imageUrl, thumbUrl, type GraphJson, type ImageRecord } from "../lib/api";
import { errorText, useStore } from "../store";

const PAGE = 24;

/** Prompt, seed, model... of a final image: its metadata, else the generation node of its graph. */
export function describeImage(rec: ImageRecord): [string, string][] {
  const rows: [string, string][] = [];
  const seen = new Set<string>();
  const add = (k: string, v: unknown) => {
    if (v === undefined || v === null || v === "" || seen.has(k) || typeof v === "object") return;
    seen.add(k);
    rows.push([k, String(v)]);
  };
  for (const [k, v] of Object.entries(rec.metadata ?? {})) add(k, v);
  const keys = ["model", "prompt", "negative_prompt", "seed", "steps", "cfg_scale", "scheduler", "strength", "width", "height"];
  for (const node of Object.values(rec.graph?.nodes ?? {})) {
    if (!keys.some((k) => k in node && k !== "width" && k !== "height")) continue;
    add("node", node.type);
    for (const k of keys) add(k, node[k]);
  }
  add("size", `${rec.width}×${rec.height}`);
  add("created", new Date(rec.created_at).toLocaleString());
  add("name", rec.image_name);
  return rows;
}

export function Gallery() {
  const { notify, setImg2img, setTab, openWorkflow, galleryVersion } = useStore();
  const [page, setPage] = useState(0);
  const [intermediates, setIntermediates] = useState(false);
  const [starredOnly, setStarredOnly] = useState(false);
  const [items, setItems] = useState<ImageRecord[] | null>(null);
  const [total, setTotal] = useState(0);
  const [error, setError] = useState<string | null>(null);
  const [selected, setSelected] = useState<ImageRecord | null>(null);
  const viewerRef = useRef<HTMLDivElement>(null);

  const load = useCallback(() => {
    api
      .images(page * PAGE, PAGE, intermediates, starredOnly)
      .then((p) => {
        setItems(p.items);
        setTotal(p.total);
        setError(null);
      })
      .catch((e) => setError(errorText(e)));
  }, [page, intermediates, starredOnly]);
  useEffect(load, [load, galleryVersion]);
  useEffect(() => {
    if (selected) viewerRef.current?.focus();
  }, [selected]);

  const pages = Math.max(1, Math.ceil(total / PAGE));

  async function act(f: () => Promise<unknown>, done?: string) {
    try {
      await f();
      if (done) notify(done);
      load();
    } catch (e) {
      notify(errorText(e), "error");
    }
  }

  async function toggleStar(rec: ImageRecord) {
    try {
      const r = await api.star(rec.image_name, !rec.starred);
      setSelected(r);
      load();
    } catch (e) {
      notify(errorText(e), "error");
    }
  }

  return (
    <div className="gallery">
      <div className="toolbar">
        <label className="check">
          <input
            type="checkbox"
            checked={intermediates}
            onChange={(e) => {
              setIntermediates(e.target.checked);
              setPage(0);
            }}
            data-testid="show-intermediates"
          />
          Show intermediates
        </label>
        <label className="check">
          <input
            type="checkbox"
            checked={starredOnly}
            onChange={(e) => {
              setStarredOnly(e.target.checked);
              setPage(0);
            }}
          />
          Starred only
        </label>
        <span className="muted" data-testid="gallery-count">
          {total} image{total === 1 ? "" : "s"}
        </span>
        <span className="spacer" />
        <button onClick={() => setPage((p) => Math.max(0, p - 1))} disabled={page === 0}>
          ← Newer
        </button>
        <span className="muted">
          page {page + 1} / {pages}
        </span>
        <button onClick={() => setPage((p) => Math.min(pages - 1, p + 1))} disabled={page + 1 >= pages}>
          Older →
        </button>
        <button onClick={load}>Refresh</button>
      </div>
      {error && (
        <p className="error-text" role="alert">
          {error}
        </p>
      )}
      {items && items.length === 0 && !error && <p className="muted">No images yet: generate some, or run a workflow that ends in Save Image.</p>}
      <ul className="grid" data-testid="gallery-grid">
        {items?.map((rec) => (
          <li key={rec.image_name}>
            <button className="thumb" onClick={() => setSelected(rec)} aria-label={`Open ${rec.image_name}`} data-testid="gallery-item">
              <img src={thumbUrl(rec.image_name)} alt="" loading="lazy" width={160} height={160} />
              {rec.starred && <span className="star" aria-label="starred">★</span>}
              {rec.is_intermediate && <span className="badge">intermediate</span>}
            </button>
          </li>
        ))}
      </ul>
      {selected && (
        <div className="overlay" onClick={() => setSelected(null)}>
          <div
            className="viewer card"
            role="dialog"
            aria-modal="true"
            aria-label="Image viewer"
            tabIndex={-1}
            ref={viewerRef}
            onClick={(e) => e.stopPropagation()}
            onKeyDown={(e) => e.key === "Escape" && setSelected(null)}
            data-testid="viewer"
          >
            <div className="viewer-image">
              <img src={imageUrl(selected.image_name)} alt={selected.image_name} />
            </div>
            <div className="viewer-side">
              <div className="row wrap">
                <button onClick={() => toggleStar(selected)} aria-pressed={selected.starred} data-testid="star">
                  {selected.starred ? "★ Unstar" : "☆ Star"}
                </button>
                <a className="button" href={imageUrl(selected.image_name)} download={selected.image_name}>
                  Download
                </a>
                <button
                  onClick={() => {
                    setImg2img(selected.image_name);
                    setTab("generate");
                  }}
                >
                  Use as img2img source
                </button>
                <button
                  disabled={!selected.graph}
                  title={selected.graph ? "" : "This image has no stored graph"}
                  onClick={() => {
                    openWorkflow(selected.graph as GraphJson);
                    setTab("workflow");
                  }}
                  data-testid="load-workflow"
                >
                  Load workflow
                </button>
                <button
                  className="danger"
                  onClick={() => {
                    if (!confirm(`Delete ${selected.image_name}?`)) return;
                    setSelected(null);
                    act(() => api.deleteImage(selected.image_name), "Image deleted");
                  }}
                  data-testid="delete"
                >
                  Delete
                </button>
                <button onClick={() => setSelected(null)} aria-label="Close viewer">
                  Close
                </button>
              </div>
              <table className="meta" data-testid="metadata">
                <tbody>
                  {describeImage(selected).map(([k, v]) => (
                    <tr key={k}>
                      <th>{k}</th>
                      <td>{v}</td>
                    </tr>
                  ))}
                </tbody>
              </table>
              {selected.graph && (
                <details>
                  <summary>Graph</summary>
                  <pre className="json">{JSON.stringify(selected.graph, null, 2)}</pre>
                </details>
              )}
            </div>
          </div>
        </div>
      )}
    </div>
  );
}
