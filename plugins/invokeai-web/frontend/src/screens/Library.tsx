import { useCallback, useEffect, useState } from "react";
import { api, type ExposedInput, type GraphJson, type SavedWorkflow, type WorkflowSummary } from "../lib/api";
import { errorText, useStore } from "../store";

/** `name = node.field  # description` lines <-> exposed inputs. */
export function parseInputs(text: string): ExposedInput[] {
  const out: ExposedInput[] = [];
  for (const raw of text.split("\n")) {
    const [spec, ...about] = raw.split("#");
    const line = spec.trim();
    if (!line) continue;
    const m = /^([^=\s]+)\s*=\s*([^.\s]+)\.(\S+)$/.exec(line);
    if (!m) throw new Error(`"${raw.trim()}": write an exposed input as name = node_id.field`);
    const description = about.join("#").trim();
    out.push({ name: m[1], node_id: m[2], field: m[3], ...(description ? { description } : {}) });
  }
  return out;
}
export function inputsText(inputs: ExposedInput[]): string {
  return inputs.map((i) => `${i.name} = ${i.node_id}.${i.field}${i.description ? `  # ${i.description}` : ""}`).join("\n");
}
/** A typed value: JSON when it parses (numbers, true, lists), else the text itself. */
export function inputValue(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

/** The workflow library beside the editor: save the graph as a version, open, run with inputs, delete. */
export function Library({ graph, load, empty }: { graph: () => GraphJson; load: (g: GraphJson) => void; empty: boolean }) {
  const { notify } = useStore();
  const [list, setList] = useState<WorkflowSummary[] | null>(null);
  const [id, setId] = useState("");
  const [name, setName] = useState("");
  const [inputs, setInputs] = useState("");
  const [error, setError] = useState<string | null>(null);
  const [running, setRunning] = useState<SavedWorkflow | null>(null);
  const [values, setValues] = useState<Record<string, string>>({});
  const [runs, setRuns] = useState("1");

  const refresh = useCallback(() => {
    api
      .workflows()
      .then((p) => setList(p.items))
      .catch((e) => setError(errorText(e)));
  }, []);
  useEffect(refresh, [refresh]);

  async function save() {
    setError(null);
    try {
      const saved = await api.saveWorkflow(id.trim(), { name: name.trim() || id.trim(), graph: graph(), inputs: parseInputs(inputs) });
      notify(`Saved ${saved.id} version ${saved.version}`);
      refresh();
    } catch (e) {
      setError(errorText(e));
    }
  }
  async function open(wid: string) {
    try {
      const w = await api.workflow(wid);
      load(w.graph);
      setId(w.id);
      setName(w.name);
      setInputs(inputsText(w.inputs));
      notify(`Opened ${w.id} version ${w.version}`);
    } catch (e) {
      notify(errorText(e), "error");
    }
  }
  async function remove(wid: string) {
    if (!confirm(`Delete the workflow ${wid} and every version of it?`)) return;
    try {
      await api.deleteWorkflow(wid);
      if (running?.id === wid) setRunning(null);
      refresh();
    } catch (e) {
      notify(errorText(e), "error");
    }
  }
  async function startRun(wid: string) {
    try {
      const w = await api.workflow(wid);
      setRunning(w);
      setValues({});
      setError(null);
    } catch (e) {
      notify(errorText(e), "error");
    }
  }
  async function enqueue() {
    if (!running) return;
    setError(null);
    const given = Object.fromEntries(Object.entries(values).filter(([, v]) => v !== "").map(([k, v]) => [k, inputValue(v)]));
    try {
      const r = await api.enqueueWorkflow(running.id, given, Number(runs) || 1);
      notify(`Enqueued ${r.enqueued} item(s) of ${running.id}`);
    } catch (e) {
      setError(errorText(e));
    }
  }

  return (
    <aside className="library" data-testid="library" aria-label="Workflow library">
      <h3>Save to the library</h3>
      <label htmlFor="wf-id">Id</label>
      <input id="wf-id" value={id} onChange={(e) => setId(e.target.value)} placeholder="portrait" data-testid="wf-id" />
      <label htmlFor="wf-name">Name</label>
      <input id="wf-name" value={name} onChange={(e) => setName(e.target.value)} placeholder="Portrait" data-testid="wf-name" />
      <label htmlFor="wf-inputs">Exposed inputs (name = node_id.field  # about)</label>
      <textarea id="wf-inputs" value={inputs} onChange={(e) => setInputs(e.target.value)} placeholder="steps = denoise.steps" data-testid="wf-inputs" />
      <div className="row">
        <button className="primary" onClick={save} disabled={empty || !id.trim()} data-testid="wf-save">
          Save version
        </button>
      </div>
      {error && (
        <p className="error-text" role="alert" data-testid="wf-error">
          {error}
        </p>
      )}
      {running && (
        <section data-testid="wf-run">
          <h3>
            Run {running.name} <span className="muted small">v{running.version}</span>
          </h3>
          {running.inputs.length === 0 && <p className="muted small">This workflow exposes no inputs.</p>}
          {running.inputs.map((i) => (
            <div key={i.name}>
              <label htmlFor={`wf-in-${i.name}`}>
                {i.name} <span className="muted small">{i.description ?? `${i.node_id}.${i.field}`}</span>
              </label>
              <input
                id={`wf-in-${i.name}`}
                value={values[i.name] ?? ""}
                onChange={(e) => setValues((v) => ({ ...v, [i.name]: e.target.value }))}
                placeholder="(as saved)"
                data-testid={`wf-input-${i.name}`}
              />
            </div>
          ))}
          <label htmlFor="wf-runs">Runs</label>
          <input id="wf-runs" type="number" min={1} value={runs} onChange={(e) => setRuns(e.target.value)} data-testid="wf-runs" />
          <div className="row">
            <button className="primary" onClick={enqueue} data-testid="wf-enqueue">
              Enqueue
            </button>
            <button onClick={() => setRunning(null)}>Close</button>
          </div>
        </section>
      )}
      <h3>
        Library <button onClick={refresh}>Refresh</button>
      </h3>
      {list && list.length === 0 && <p className="muted small">No saved workflows yet.</p>}
      <ul data-testid="wf-list">
        {(list ?? []).map((w) => (
          <li key={w.id} data-workflow-id={w.id}>
            <strong>{w.name}</strong> <span className="muted small">
              {w.id} · v{w.version} · {w.inputs.length} input(s)
            </span>
            <div className="row">
              <button onClick={() => open(w.id)} aria-label={`Open ${w.id}`}>
                Open
              </button>
              <button onClick={() => startRun(w.id)} aria-label={`Run ${w.id}`}>
                Run…
              </button>
              <button className="danger" onClick={() => remove(w.id)} aria-label={`Delete ${w.id}`}>
                Delete
              </button>
            </div>
          </li>
        ))}
      </ul>
    </aside>
  );
}
