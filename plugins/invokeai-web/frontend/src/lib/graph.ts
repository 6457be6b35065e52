/** Editor graph <-> kernel graph JSON; connection checks; a simple layered layout. */
import type { EdgeJson, GraphJson } from "./api";
import { acceptsConnection, hasWidget, type NodeTemplate } from "./schema";
import { areTypesCompatible, typeName } from "./typecompat";

export interface EditorNode {
  id: string;
  type: string;
  values: Record<string, unknown>;
  position: { x: number; y: number };
}
export interface EditorEdge {
  source: string;
  sourceHandle: string;
  target: string;
  targetHandle: string;
}

/** Inputs that may take several connections (the collect node gathers them). */
const MULTI_INPUTS = new Set(["collect.item"]);

/** Why `edge` cannot be added to the graph, or null when it can (the kernel's rules). */
export function connectionProblem(
  edge: EditorEdge,
  nodes: EditorNode[],
  edges: EditorEdge[],
  templates: Map<string, NodeTemplate>,
): string | null {
  const src = nodes.find((n) => n.id === edge.source);
  const dst = nodes.find((n) => n.id === edge.target);
  if (!src || !dst) return "unknown node";
  if (src.id === dst.id) return "a node cannot feed itself";
  const out = templates.get(src.type)?.outputs.find((f) => f.name === edge.sourceHandle);
  const inp = templates.get(dst.type)?.inputs.find((f) => f.name === edge.targetHandle);
  if (!out || !inp) return "unknown field";
  if (!acceptsConnection(inp)) return `${dst.id}.${inp.name} takes a value, not a connection`;
  if (!areTypesCompatible(out.type, inp.type))
    return `${typeName(out.type)} (${src.id}.${out.name}) does not fit ${typeName(inp.type)} (${dst.id}.${inp.name})`;
  if (!MULTI_INPUTS.has(`${dst.type}.${inp.name}`) && edges.some((e) => e.target === dst.id && e.targetHandle === inp.name))
    return `${dst.id}.${inp.name} is already connected`;
  // no cycles: the source must not be downstream of the destination
  const seen = new Set<string>();
  const stack = [dst.id];
  while (stack.length) {
    const id = stack.pop()!;
    if (id === src.id) return "the connection would make a cycle";
    if (seen.has(id)) continue;
    seen.add(id);
    for (const e of edges) if (e.source === id) stack.push(e.target);
  }
  return null;
}

/** The kernel graph JSON: widget values for unconnected inputs, and the edges. */
export function toGraph(nodes: EditorNode[], edges: EditorEdge[], templates: Map<string, NodeTemplate>): GraphJson {
  const graph: GraphJson = { nodes: {}, edges: [] };
  for (const n of nodes) {
    const node: GraphJson["nodes"][string] = { id: n.id, type: n.type };
    const tpl = templates.get(n.type);
    for (const f of tpl?.inputs ?? []) {
      if (!hasWidget(f)) continue;
      if (edges.some((e) => e.target === n.id && e.targetHandle === f.name)) continue;
      const v = n.values[f.name];
      if (v === undefined || (v === "" && f.widget.kind === "image")) continue;
      node[f.name] = v;
    }
    graph.nodes[n.id] = node;
  }
  graph.edges = edges.map(
    (e): EdgeJson => ({ source: { node_id: e.source, field: e.sourceHandle }, destination: { node_id: e.target, field: e.targetHandle } }),
  );
  return graph;
}

/** Editor nodes and edges from a kernel graph; nodes without a stored position are laid out in layers. */
export function fromGraph(graph: GraphJson, positions: Record<string, { x: number; y: number }> = {}): { nodes: EditorNode[]; edges: EditorEdge[] } {
  const ids = Object.keys(graph.nodes ?? {});
  const depth = new Map<string, number>();
  const incoming = (id: string) => (graph.edges ?? []).filter((e) => e.destination.node_id === id).map((e) => e.source.node_id);
  const depthOf = (id: string, guard = 0): number => {
    if (depth.has(id)) return depth.get(id)!;
    const d = guard > ids.length ? 0 : Math.max(-1, ...incoming(id).map((s) => depthOf(s, guard + 1))) + 1;
    depth.set(id, d);
    return d;
  };
  const rows = new Map<number, number>();
  const nodes = ids.map((id) => {
    const { id: _id, type, ...values } = graph.nodes[id];
    void _id;
    const d = depthOf(id);
    const row = rows.get(d) ?? 0;
    rows.set(d, row + 1);
    return { id, type, values, position: positions[id] ?? { x: 40 + d * 320, y: 40 + row * 260 } };
  });
  const edges = (graph.edges ?? []).map((e) => ({
    source: e.source.node_id,
    sourceHandle: e.source.field,
    target: e.destination.node_id,
    targetHandle: e.destination.field,
  }));
  return { nodes, edges };
}

/** A new node id for a type: `type_1`, `type_2`, ... */
export function newNodeId(type: string, taken: Iterable<string>): string {
  const used = new Set(taken);
  let i = 1;
  while (used.has(`${type}_${i}`)) i++;
  return `${type}_${i}`;
}
