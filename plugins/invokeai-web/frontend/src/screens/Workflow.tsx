import {
  Background,
  Controls,
  Handle,
  Position,
  ReactFlow,
  ReactFlowProvider,
  useReactFlow,
  type Connection,
  type Edge,
  type FinalConnectionState,
  type Node,
  type NodeProps,
  type OnEdgesChange,
  type OnNodesChange,
  applyEdgeChanges,
  applyNodeChanges,
} from "@xyflow/react";
import "@xyflow/react/dist/style.css";
import { createContext, memo, useCallback, useContext, useEffect, useMemo, useRef, useState, type ChangeEvent, type DragEvent } from "react";
import { api, imagesInResult, problemOf, thumbUrl, type GraphFileJson, type GraphJson, type LoadedGraph } from "../lib/api";
import { ImagePicker } from "./ImagePicker";
import { modelGroups, modelLabel } from "../lib/models";
import { recentEvents, useServerEvents, type ServerEvent } from "../lib/events";
import { connectionProblem, fromGraph, newNodeId, toGraph, type EditorEdge, type EditorNode } from "../lib/graph";
import { Library } from "./Library";
import { coerceNumber, colorToHex, groupTemplates, hexToColor, initialValue, modelFits, type FieldTemplate, type NodeTemplate } from "../lib/schema";
import { typeName } from "../lib/typecompat";
import { errorText, useStore } from "../store";

type NodeData = { type: string; values: Record<string, unknown> };
type FlowNode = Node<NodeData, "invocation">;
interface RunState {
  status: "pending" | "running" | "done" | "error";
  images: string[];
  text?: string;
  error?: string;
}
interface Candidate {
  source: string;
  sourceHandle: string;
  label: string;
}
interface EditorCtx {
  templates: Map<string, NodeTemplate>;
  connected: Set<string>;
  runs: Record<string, RunState>;
  setValue: (nodeId: string, field: string, value: unknown) => void;
  /** Outputs of other nodes that may feed this input (computed when asked: a keyboard connect). */
  candidates: (nodeId: string, field: string) => Candidate[];
  connectFrom: (c: Candidate, nodeId: string, field: string) => void;
  disconnect: (nodeId: string, field: string) => void;
}

/** Connecting without a mouse: a button that opens a list of the outputs that fit this input. */
function ConnectControl({ nodeId, field, title, isConnected }: { nodeId: string; field: string; title: string; isConnected: boolean }) {
  const ctx = useContext(Ctx)!;
  const [options, setOptions] = useState<Candidate[] | null>(null);
  if (isConnected)
    return (
      <button className="icon nodrag small" aria-label={`Disconnect ${title} of ${nodeId}`} onClick={() => ctx.disconnect(nodeId, field)}>
        ⨯
      </button>
    );
  if (options === null)
    return (
      <button className="icon nodrag small" aria-label={`Connect ${title} of ${nodeId}`} title="Connect from another node's output" onClick={() => setOptions(ctx.candidates(nodeId, field))}>
        ⇠
      </button>
    );
  return (
    <select
      className="nodrag"
      aria-label={`Output to connect to ${title} of ${nodeId}`}
      autoFocus
      defaultValue=""
      onBlur={() => setOptions(null)}
      onKeyDown={(e) => e.key === "Escape" && setOptions(null)}
      onChange={(e) => {
        const c = options[Number(e.target.value)];
        setOptions(null);
        if (c) ctx.connectFrom(c, nodeId, field);
      }}
    >
      <option value="" disabled>
        {options.length ? "Connect from…" : "No output fits this input"}
      </option>
      {options.map((c, i) => (
        <option key={`${c.source}.${c.sourceHandle}`} value={i}>
          {c.label}
        </option>
      ))}
    </select>
  );
}
const Ctx = createContext<EditorCtx | null>(null);
const DND_TYPE = "application/x-invokeai-node";

function toFlow(n: EditorNode): FlowNode {
  return { id: n.id, type: "invocation", position: n.position, data: { type: n.type, values: n.values } };
}
function toEditorNodes(nodes: FlowNode[]): EditorNode[] {
  return nodes.map((n) => ({ id: n.id, type: n.data.type, values: n.data.values, position: n.position }));
}
function toEditorEdges(edges: Edge[]): EditorEdge[] {
  return edges.map((e) => ({ source: e.source, sourceHandle: e.sourceHandle ?? "", target: e.target, targetHandle: e.targetHandle ?? "" }));
}
function toFlowEdge(e: EditorEdge): Edge {
  return { id: `${e.source}.${e.sourceHandle}->${e.target}.${e.targetHandle}`, ...e };
}

function FieldWidget({ f, value, set }: { f: FieldTemplate; value: unknown; set: (v: unknown) => void }) {
  const { models } = useStore();
  const w = f.widget;
  const label = `${f.title}`;
  // the installed models that fit a model input (its type hint, if the schema has one)
  const fitting = useMemo(() => (w.kind === "model" ? (models ?? []).filter((m) => modelFits(w, m)) : []), [w, models]);
  // with one fitting model installed, a model input starts on it (as the Generate screen does)
  const only = w.kind === "model" && fitting.length === 1 ? fitting[0].name : undefined;
  useEffect(() => {
    if (only !== undefined && (value === undefined || value === null || value === "")) set(only);
  }, [only, value, set]);
  switch (w.kind) {
    case "number":
      return (
        <input
          className="nodrag"
          type="number"
          aria-label={label}
          min={w.min}
          max={w.max}
          step={w.step ?? "any"}
          defaultValue={value === undefined || value === null ? "" : String(value)}
          onBlur={(e) => {
            const n = coerceNumber(w, e.target.value);
            e.target.value = n === undefined ? "" : String(n);
            set(n);
          }}
          onKeyDown={(e) => e.key === "Enter" && (e.target as HTMLInputElement).blur()}
        />
      );
    case "select":
      return (
        <select className="nodrag" aria-label={label} value={String(value ?? "")} onChange={(e) => set(w.options.find((o) => String(o) === e.target.value))}>
          {w.options.map((o) => (
            <option key={String(o)} value={String(o)}>
              {String(o)}
            </option>
          ))}
        </select>
      );
    case "checkbox":
      return <input className="nodrag" type="checkbox" aria-label={label} checked={value === true} onChange={(e) => set(e.target.checked)} />;
    case "text":
      return w.multiline ? (
        <textarea className="nodrag nowheel" aria-label={label} rows={2} value={String(value ?? "")} onChange={(e) => set(e.target.value)} />
      ) : (
        <input className="nodrag" aria-label={label} value={String(value ?? "")} onChange={(e) => set(e.target.value)} />
      );
    case "model":
      return (
        <select className="nodrag" aria-label={label} value={String(value ?? only ?? "")} onChange={(e) => set(e.target.value)}>
          <option value="">{fitting.length || !w.modelTypes ? "choose a model…" : `no ${w.modelTypes.join(" / ")} model installed`}</option>
          {w.modelTypes
            ? fitting.map((m) => (
                <option key={m.name} value={m.name}>
                  {modelLabel(m)}
                </option>
              ))
            : modelGroups(fitting).map(([type, list]) => (
                <optgroup key={type} label={type}>
                  {list.map((m) => (
                    <option key={m.name} value={m.name}>
                      {modelLabel(m)}
                    </option>
                  ))}
                </optgroup>
              ))}
          {typeof value === "string" && value !== "" && !fitting.some((m) => m.name === value) && <option value={value}>{value} (not installed)</option>}
        </select>
      );
    case "image":
      return <ImagePicker value={value} onChange={set} className="nodrag" />;
    case "color":
      return (
        <input
          className="nodrag"
          type="color"
          aria-label={label}
          value={colorToHex(value)}
          onChange={(e) => set(hexToColor(e.target.value, (value as { a?: number } | undefined)?.a ?? 255))}
        />
      );
    case "json":
      return (
        <textarea
          className="nodrag nowheel mono"
          aria-label={`${label} (JSON)`}
          rows={1}
          defaultValue={value === undefined ? "" : JSON.stringify(value)}
          onBlur={(e) => {
            try {
              set(e.target.value.trim() ? JSON.parse(e.target.value) : undefined);
              e.target.classList.remove("invalid");
            } catch {
              e.target.classList.add("invalid");
            }
          }}
        />
      );
  }
  return null;
}

const InvocationNode = memo(function InvocationNode({ id, data, selected }: NodeProps<FlowNode>) {
  const ctx = useContext(Ctx)!;
  const tpl = ctx.templates.get(data.type);
  const run = ctx.runs[id];
  if (!tpl)
    return (
      <div className="inv-node error">
        <div className="inv-head">{data.type}</div>
        <div className="inv-body error-text">Unknown node type (is its plugin loaded?)</div>
      </div>
    );
  return (
    <div className={`inv-node ${selected ? "selected" : ""} st-${run?.status ?? "idle"}`} data-testid={`node-${id}`} data-status={run?.status ?? "idle"}>
      <div className="inv-head" title={tpl.description}>
        <span>{tpl.title}</span>
        <span className="muted small">{id}</span>
        {run && <span className={`pill st-${run.status}`}>{run.status}</span>}
      </div>
      <div className="inv-body">
        {tpl.inputs
          .filter((f) => f.widget.kind !== "hidden")
          .map((f) => {
            const isConnected = ctx.connected.has(`${id}.${f.name}`);
            return (
              <div className="inv-field" key={f.name} title={`${f.description}\n${typeName(f.type)}`}>
                {f.input !== "direct" && <Handle type="target" position={Position.Left} id={f.name} className="port" />}
                <span className="inv-label">
                  {f.title}
                  {f.required && !isConnected && !f.hasDefault ? <span className="req">*</span> : null}
                  <span className="inv-type">{typeName(f.type, true)}</span>
                  {f.input !== "direct" && <ConnectControl nodeId={id} field={f.name} title={f.title} isConnected={isConnected} />}
                </span>
                {!isConnected && f.widget.kind !== "none" && (
                  <FieldWidget f={f} value={data.values[f.name]} set={(v) => ctx.setValue(id, f.name, v)} />
                )}
              </div>
            );
          })}
        <div className="inv-outputs">
          {tpl.outputs.map((f) => (
            <div className="inv-out" key={f.name} title={typeName(f.type)}>
              <span className="inv-label">
                <span className="inv-type">{typeName(f.type, true)}</span>
                {f.title}
              </span>
              <Handle type="source" position={Position.Right} id={f.name} className="port" />
            </div>
          ))}
        </div>
        {run?.error && <div className="error-text small">{run.error}</div>}
        {run?.images.map((n) => (
          <a key={n} href={`/api/v1/images/i/${n}/full`} target="_blank" rel="noreferrer" className="nodrag">
            <img className="inv-result" src={thumbUrl(n)} alt={`result of ${id}`} data-testid="node-result-image" />
          </a>
        ))}
        {run?.text && <pre className="inv-text">{run.text}</pre>}
      </div>
    </div>
  );
});
const nodeTypes = { invocation: InvocationNode };

function Palette({ templates, onAdd }: { templates: NodeTemplate[]; onAdd: (type: string) => void }) {
  const [query, setQuery] = useState("");
  const groups = useMemo(() => groupTemplates(templates, query), [templates, query]);
  return (
    <aside className="palette" aria-label="Node palette">
      <input type="search" placeholder={`Search ${templates.length} nodes…`} value={query} onChange={(e) => setQuery(e.target.value)} aria-label="Search nodes" data-testid="palette-search" />
      <div className="palette-list">
        {groups.map(([cat, list]) => (
          <details key={cat} open>
            <summary>
              {cat} <span className="muted">({list.length})</span>
            </summary>
            {list.map((t) => (
              <button
                key={t.type}
                className="palette-item"
                draggable
                onDragStart={(e) => {
                  e.dataTransfer.setData(DND_TYPE, t.type);
                  e.dataTransfer.effectAllowed = "move";
                }}
                onClick={() => onAdd(t.type)}
                title={`${t.description}\n(drag onto the canvas, or press Enter to add)`}
                data-testid={`palette-${t.type}`}
              >
                {t.title}
                <span className="muted small"> {t.type}</span>
              </button>
            ))}
          </details>
        ))}
        {!groups.length && <p className="muted">No node matches.</p>}
      </div>
    </aside>
  );
}

function Editor() {
  const { templates: list, templatesError, notify, workflowToLoad, openWorkflow } = useStore();
  const templates = useMemo(() => new Map((list ?? []).map((t) => [t.type, t])), [list]);
  const [nodes, setNodes] = useState<FlowNode[]>([]);
  const [edges, setEdges] = useState<Edge[]>([]);
  const [runs, setRuns] = useState<Record<string, RunState>>({});
  const [itemId, setItemId] = useState<number | null>(null);
  const [showLibrary, setShowLibrary] = useState(false);
  const itemRef = useRef<number | null>(null);
  const flow = useReactFlow();
  const wrapper = useRef<HTMLDivElement>(null);
  const fileInput = useRef<HTMLInputElement>(null);
  const nodesRef = useRef(nodes);
  nodesRef.current = nodes;
  const edgesRef = useRef(edges);
  edgesRef.current = edges;

  const onNodesChange: OnNodesChange<FlowNode> = useCallback((c) => setNodes((ns) => applyNodeChanges(c, ns)), []);
  const onEdgesChange: OnEdgesChange = useCallback((c) => setEdges((es) => applyEdgeChanges(c, es)), []);
  const setValue = useCallback(
    (nodeId: string, field: string, value: unknown) =>
      setNodes((ns) => ns.map((n) => (n.id === nodeId ? { ...n, data: { ...n.data, values: { ...n.data.values, [field]: value } } } : n))),
    [],
  );
  const connected = useMemo(() => new Set(edges.map((e) => `${e.target}.${e.targetHandle}`)), [edges]);

  const problem = useCallback(
    (c: Connection | Edge) =>
      connectionProblem(
        { source: c.source, sourceHandle: c.sourceHandle ?? "", target: c.target, targetHandle: c.targetHandle ?? "" },
        toEditorNodes(nodesRef.current),
        toEditorEdges(edgesRef.current),
        templates,
      ),
    [templates],
  );
  const isValidConnection = useCallback((c: Connection | Edge) => problem(c) === null, [problem]);
  const onConnect = useCallback(
    (c: Connection) => {
      const p = problem(c);
      if (p) return notify(`Connection refused: ${p}`, "error");
      setEdges((es) => [...es, toFlowEdge({ source: c.source, sourceHandle: c.sourceHandle ?? "", target: c.target, targetHandle: c.targetHandle ?? "" })]);
    },
    [problem, notify],
  );
  const onConnectEnd = useCallback(
    (_: MouseEvent | TouchEvent, s: FinalConnectionState) => {
      if (!s.toHandle || s.isValid || !s.fromHandle) return;
      const from = s.fromHandle.type === "source" ? s.fromHandle : s.toHandle;
      const to = s.fromHandle.type === "source" ? s.toHandle : s.fromHandle;
      const p = problem({ source: from.nodeId, sourceHandle: from.id ?? null, target: to.nodeId, targetHandle: to.id ?? null });
      if (p) notify(`Connection refused: ${p}`, "error");
    },
    [problem, notify],
  );

  const candidates = useCallback(
    (target: string, targetHandle: string): Candidate[] => {
      const out: Candidate[] = [];
      for (const n of nodesRef.current) {
        if (n.id === target) continue;
        const tpl = templates.get(n.data.type);
        for (const o of tpl?.outputs ?? []) {
          const c = { source: n.id, sourceHandle: o.name, target, targetHandle };
          if (problem(c) === null) out.push({ source: n.id, sourceHandle: o.name, label: `${n.id} · ${o.title} (${typeName(o.type)})` });
        }
      }
      return out;
    },
    [templates, problem],
  );
  const connectFrom = useCallback(
    (c: Candidate, target: string, targetHandle: string) => onConnect({ source: c.source, sourceHandle: c.sourceHandle, target, targetHandle }),
    [onConnect],
  );
  const disconnect = useCallback(
    (target: string, targetHandle: string) => setEdges((es) => es.filter((e) => !(e.target === target && e.targetHandle === targetHandle))),
    [],
  );

  const addNode = useCallback(
    (type: string, position?: { x: number; y: number }) => {
      const tpl = templates.get(type);
      if (!tpl) return;
      const id = newNodeId(type, nodesRef.current.map((n) => n.id));
      const values = Object.fromEntries(tpl.inputs.filter((f) => f.widget.kind !== "none").map((f) => [f.name, initialValue(f)]));
      let pos = position;
      const placed = nodesRef.current;
      if (!pos && placed.length) {
        // added from the palette with the keyboard: to the right of what is there, then brought into view
        pos = { x: Math.max(...placed.map((n) => n.position.x)) + 300, y: Math.min(...placed.map((n) => n.position.y)) };
        setTimeout(() => flow.fitView({ padding: 0.2 }), 50);
      } else if (!pos) {
        const r = wrapper.current?.getBoundingClientRect();
        pos = flow.screenToFlowPosition({ x: (r?.left ?? 0) + (r?.width ?? 600) / 2 - 120, y: (r?.top ?? 0) + 80 });
      }
      setNodes((ns) => [...ns.map((n) => ({ ...n, selected: false })), { ...toFlow({ id, type, values, position: pos! }), selected: true }]);
    },
    [templates, flow],
  );

  const onDrop = useCallback(
    (e: DragEvent) => {
      e.preventDefault();
      const type = e.dataTransfer.getData(DND_TYPE);
      if (type) addNode(type, flow.screenToFlowPosition({ x: e.clientX, y: e.clientY }));
    },
    [addNode, flow],
  );

  const load = useCallback(
    (graph: GraphJson, positions?: Record<string, { x: number; y: number }>) => {
      const g = fromGraph(graph, positions);
      setNodes(g.nodes.map(toFlow));
      setEdges(g.edges.map(toFlowEdge));
      setRuns({});
      setTimeout(() => flow.fitView({ padding: 0.2 }), 50);
    },
    [flow],
  );
  useEffect(() => {
    if (workflowToLoad) {
      load(workflowToLoad);
      openWorkflow(null);
      notify("Workflow loaded from the image");
    }
  }, [workflowToLoad, load, openWorkflow, notify]);

  const graph = () => toGraph(toEditorNodes(nodes), toEditorEdges(edges), templates);

  async function run() {
    if (!nodes.length) return notify("Add nodes first: drag them from the palette.", "error");
    try {
      const res = await api.enqueue(graph());
      itemRef.current = res.item_ids[0];
      setItemId(res.item_ids[0]);
      setRuns(Object.fromEntries(nodes.map((n) => [n.id, { status: "pending", images: [] } as RunState])));
      recentEvents(res.item_ids).forEach((ev) => handleRef.current(ev)); // events that beat the response
    } catch (e) {
      notify(errorText(e), "error");
    }
  }

  const handleRef = useRef<(e: ServerEvent) => void>(() => {});
  useServerEvents((e) => handleRef.current(e), []);
  handleRef.current = (e: ServerEvent) => {
    if (itemRef.current === null || e.item_id !== itemRef.current) return;
    const nid = e.source_node_id;
    const patch = (s: Partial<RunState>) => nid && setRuns((r) => ({ ...r, [nid]: { ...(r[nid] ?? { images: [] }), ...s } as RunState }));
    if (e.event === "invocation_started") patch({ status: "running" });
    else if (e.event === "invocation_complete") {
      const images = imagesInResult(e.result);
      const { type: _t, ...rest } = e.result ?? {};
      void _t;
      patch({ status: "done", images, text: images.length ? undefined : JSON.stringify(rest) });
    } else if (e.event === "invocation_error") patch({ status: "error", error: `${e.error_type ?? "Error"}: ${e.error_message ?? e.error ?? ""}` });
    else if (e.event === "queue_item_status_changed" && e.status === "failed") notify(`The workflow failed: ${e.error_message ?? e.error_type ?? ""}`, "error");
    else if (e.event === "queue_item_status_changed" && e.status === "completed") notify("The workflow finished");
  };

  /** Save a graph file: the graph with the node versions and distributions it needs (stamped by the
   * server from what is installed) and the editor's positions under `ui`; `invokeai run -f` runs it. */
  async function save() {
    let file: GraphFileJson;
    try {
      file = await api.graphFile(graph());
    } catch (e) {
      return notify(`Cannot save: ${errorText(e)}`, "error");
    }
    const data: GraphFileJson = { ...file, ui: { positions: Object.fromEntries(nodes.map((n) => [n.id, n.position])) } };
    const url = URL.createObjectURL(new Blob([JSON.stringify(data, null, 2)], { type: "application/json" }));
    const a = document.createElement("a");
    a.href = url;
    a.download = "workflow.json";
    a.click();
    setTimeout(() => URL.revokeObjectURL(url), 1000);
  }
  /** Open a graph file (or an older `{format, graph, positions}` workflow): the server checks it
   * against the installed plugins and migrates old nodes; a missing pack is one line naming it. */
  async function openFile(e: ChangeEvent<HTMLInputElement>) {
    const f = e.target.files?.[0];
    e.target.value = "";
    if (!f) return;
    try {
      const data = JSON.parse(await f.text());
      // a bare graph file, or a file wrapping one under "graph" (an older workflow, a batch file)
      const wrapped = data && typeof data.nodes !== "object" && data.graph && typeof data.graph.nodes === "object";
      const file: GraphFileJson = wrapped ? data.graph : data;
      if (!file || typeof file.nodes !== "object") throw new Error("not a workflow: expected {nodes, edges}");
      const positions = file.ui?.positions ?? data.positions;
      let loaded: LoadedGraph;
      try {
        loaded = await api.loadGraphFile(file);
      } catch (err) {
        const missing = problemOf(err, "MissingPluginError");
        if (missing) return notify(`Cannot open ${f.name}: ${missing}`, "error");
        throw err;
      }
      load(loaded.graph, positions);
      const changed = loaded.changed.map((c) => `${c.node_id} (${c.node_type} ${c.saved} → ${c.installed})`);
      notify(changed.length ? `Loaded ${f.name}; upgraded ${changed.join(", ")}` : `Loaded ${f.name}`);
    } catch (err) {
      notify(`Cannot open ${f.name}: ${errorText(err)}`, "error");
    }
  }

  const ctx = useMemo(
    () => ({ templates, connected, runs, setValue, candidates, connectFrom, disconnect }),
    [templates, connected, runs, setValue, candidates, connectFrom, disconnect],
  );
  if (templatesError) return <p className="error-text" role="alert">{templatesError}</p>;
  if (!list) return <p className="muted">Loading node types…</p>;
  return (
    <Ctx.Provider value={ctx}>
      <div className="workflow">
        <Palette templates={list} onAdd={(t) => addNode(t)} />
        <div className="canvas-col">
          <div className="toolbar">
            <button className="primary" onClick={run} data-testid="run-workflow">
              Run
            </button>
            <button onClick={save} disabled={!nodes.length}>
              Save…
            </button>
            <button onClick={() => fileInput.current?.click()}>Open…</button>
            <input ref={fileInput} type="file" accept="application/json,.json" hidden onChange={openFile} data-testid="open-workflow" />
            <button
              onClick={() => {
                setNodes([]);
                setEdges([]);
                setRuns({});
              }}
              disabled={!nodes.length}
            >
              Clear
            </button>
            <button onClick={() => setShowLibrary((s) => !s)} aria-pressed={showLibrary} data-testid="toggle-library">
              Library
            </button>
            <span className="muted small" data-testid="graph-size">
              {nodes.length} nodes · {edges.length} edges{itemId !== null ? ` · queue item ${itemId}` : ""}
            </span>
          </div>
          <div className="canvas-row">
          <div className="canvas" ref={wrapper} onDragOver={(e) => e.preventDefault()} onDrop={onDrop} data-testid="canvas">
            <ReactFlow
              nodes={nodes}
              edges={edges}
              nodeTypes={nodeTypes}
              onNodesChange={onNodesChange}
              onEdgesChange={onEdgesChange}
              onConnect={onConnect}
              onConnectEnd={onConnectEnd}
              isValidConnection={isValidConnection}
              colorMode="dark"
              deleteKeyCode={["Backspace", "Delete"]}
              defaultViewport={{ x: 0, y: 0, zoom: 1 }}
              minZoom={0.2}
              proOptions={{ hideAttribution: true }}
            >
              <Background />
              <Controls />
            </ReactFlow>
          </div>
          {showLibrary && <Library graph={graph} load={(g) => load(g)} empty={!nodes.length} />}
          </div>
        </div>
      </div>
    </Ctx.Provider>
  );
}

export default function Workflow() {
  return (
    <ReactFlowProvider>
      <Editor />
    </ReactFlowProvider>
  );
}
