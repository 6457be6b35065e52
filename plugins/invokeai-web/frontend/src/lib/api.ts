/** A small typed client for the HTTP API (/api/v1), with readable errors. */
import type { NodeInfo } from "./schema";

export const API = "/api/v1";
export const QUEUE = "default";

export class ApiError extends Error {
  constructor(
    message: string,
    public status: number,
    public body?: unknown,
  ) {
    super(message);
  }
}

/** The one-line message of a structured problem of this `type` in an API error (e.g. `MissingPluginError`). */
export function problemOf(err: unknown, type: string): string | undefined {
  if (!(err instanceof ApiError) || !err.body || typeof err.body !== "object") return undefined;
  const d = (err.body as { detail?: unknown }).detail;
  if (!Array.isArray(d)) return undefined;
  const p = d.find((x) => x && typeof x === "object" && (x as { type?: unknown }).type === type) as { msg?: string } | undefined;
  return p?.msg;
}

/** The server's error body as one line (FastAPI's `detail`, a string or a list of problems). */
function detailText(body: unknown): string | undefined {
  if (!body || typeof body !== "object") return undefined;
  const d = (body as { detail?: unknown }).detail;
  if (typeof d === "string") return d;
  if (Array.isArray(d))
    return d
      .map((p) => {
        const loc = Array.isArray(p?.loc) ? p.loc.filter((x: unknown) => x !== "body").join(".") : "";
        return loc ? `${loc}: ${p?.msg ?? ""}` : String(p?.msg ?? JSON.stringify(p));
      })
      .join("; ");
  if (d && typeof d === "object") return (d as { message?: string }).message ?? JSON.stringify(d);
  return undefined;
}

// Called when the server answers 401: the session cookie expired or the token changed; sign in again.
const unauthorizedListeners = new Set<() => void>();
export function onUnauthorized(fn: () => void): () => void {
  unauthorizedListeners.add(fn);
  return () => unauthorizedListeners.delete(fn);
}

export async function request<T>(method: string, path: string, body?: unknown): Promise<T> {
  let res: Response;
  const init: RequestInit = { method, headers: {} };
  if (body instanceof FormData) init.body = body;
  else if (body !== undefined) {
    init.body = JSON.stringify(body);
    (init.headers as Record<string, string>)["Content-Type"] = "application/json";
  }
  try {
    res = await fetch(API + path, init);
  } catch {
    throw new ApiError("The server is unreachable: is `invokeai serve` running?", 0);
  }
  if (res.status === 204) return undefined as T;
  const text = await res.text();
  let data: unknown = undefined;
  try {
    data = text ? JSON.parse(text) : undefined;
  } catch {
    /* not JSON */
  }
  if (res.status === 401 && !path.startsWith("/auth")) unauthorizedListeners.forEach((f) => f());
  if (!res.ok) {
    const what = detailText(data) ?? (text.slice(0, 200) || res.statusText);
    throw new ApiError(`${method} ${path} failed (${res.status}): ${what}`, res.status, data);
  }
  return data as T;
}

export interface ImageRecord {
  image_name: string;
  width: number;
  height: number;
  mode: string;
  session_id: string | null;
  node_id: string | null;
  created_at: string;
  is_intermediate: boolean;
  starred: boolean;
  metadata: Record<string, unknown> | null;
  graph: GraphJson | null;
}
export interface Page<T> {
  items: T[];
  offset: number;
  limit: number;
  total: number;
}
export interface EdgeJson {
  source: { node_id: string; field: string };
  destination: { node_id: string; field: string };
}
export interface GraphJson {
  nodes: Record<string, Record<string, unknown> & { id: string; type: string }>;
  edges: EdgeJson[];
}
/** What provided a node when a graph file was saved. */
export interface NodeVersion {
  version: string;
  plugin?: string;
  distribution?: string;
  distribution_version?: string;
}
/** A graph file: a graph plus the versions it needs (`invokeai run -f` reads it as it is). */
export interface GraphFileJson extends GraphJson {
  schema_version?: number;
  node_versions?: Record<string, NodeVersion>;
  ui?: { positions?: Record<string, { x: number; y: number }> };
}
export interface LoadedGraph {
  graph: GraphJson;
  changed: { node_id: string; node_type: string; saved: string; installed: string }[];
  schema_version: number;
}
export interface BatchDatum {
  node_path: string;
  field_name: string;
  items: unknown[];
}
export interface EnqueueResult {
  queue_id: string;
  batch_id: string;
  enqueued: number;
  requested: number;
  priority: number;
  item_ids: number[];
}
export type QueueStatus = "pending" | "in_progress" | "completed" | "failed" | "canceled";
export interface QueueItem {
  item_id: number;
  queue_id: string;
  batch_id: string;
  session_id: string;
  status: QueueStatus;
  priority: number;
  field_values: Record<string, unknown>[];
  error_type?: string | null;
  error_message?: string | null;
  created_at: string;
  started_at?: string | null;
  completed_at?: string | null;
}
export interface QueueCounts {
  queue_id: string;
  paused: boolean;
  pending: number;
  in_progress: number;
  completed: number;
  failed: number;
  canceled: number;
  total: number;
}
export interface QueueState {
  queue: QueueCounts;
  processor: { started: boolean; running_item_ids: number[] };
}
export interface PluginInfo {
  name: string;
  module: string;
  dist?: string | null;
  version?: string | null;
  status: string;
  error?: string | null;
  hint?: string | null;
  hooks: string[];
  nodes: string[];
  services: string[];
  builtin: boolean;
  routes_error?: string | null;
}
export interface ModelRecord {
  name: string;
  base?: string;
  /** main, lora, controlnet, t2i_adapter, embedding, upscaler, ip_adapter, ... (missing on older servers: main) */
  type?: string;
  path?: string;
  description?: string;
  [key: string]: unknown;
}

const q = `/queue/${QUEUE}`;
const enc = encodeURIComponent;

export interface ExposedInput {
  name: string;
  node_id: string;
  field: string;
  description?: string | null;
}
export interface WorkflowDoc {
  name: string;
  description?: string;
  graph: GraphJson;
  inputs: ExposedInput[];
}
export interface SavedWorkflow extends WorkflowDoc {
  id: string;
  version: number;
  created_at: string;
}
export interface WorkflowSummary {
  id: string;
  name: string;
  description: string;
  version: number;
  versions: number;
  inputs: ExposedInput[];
  updated_at: string;
}
export type MoveTo = { to: "front" | "back" } | { before: number };

export interface AuthStatus {
  required: boolean;
  authenticated: boolean;
}

export const api = {
  authStatus: () => request<AuthStatus>("GET", "/auth"),
  login: (token: string) => request<void>("POST", "/auth/login", { token }),
  logout: () => request<void>("POST", "/auth/logout"),
  nodes: () => request<NodeInfo[]>("GET", "/nodes"),
  models: () => request<ModelRecord[]>("GET", "/models"),
  addModel: (body: { path: string; name?: string; prediction_type?: string }) => request<ModelRecord>("POST", "/models", body),
  removeModel: (name: string) => request<ModelRecord>("DELETE", `/models/${encodeURIComponent(name)}`),
  plugins: () => request<PluginInfo[]>("GET", "/plugins"),
  version: () => request<{ version: string; web_version: string; plugins: Record<string, string | null> }>("GET", "/app/version"),
  images: (offset: number, limit: number, intermediates: boolean, starred?: boolean) => {
    const p = new URLSearchParams({ offset: String(offset), limit: String(limit) });
    if (!intermediates) p.set("is_intermediate", "false");
    if (starred) p.set("starred", "true");
    return request<Page<ImageRecord>>("GET", `/images?${p}`);
  },
  image: (name: string) => request<ImageRecord>("GET", `/images/i/${enc(name)}`),
  star: (name: string, starred: boolean) => request<ImageRecord>("PATCH", `/images/i/${enc(name)}`, { starred }),
  deleteImage: (name: string) => request<void>("DELETE", `/images/i/${enc(name)}`),
  upload: (file: File) => {
    const form = new FormData();
    form.append("file", file);
    return request<ImageRecord>("POST", "/images/upload", form);
  },
  graphFile: (graph: GraphJson) => request<GraphFileJson>("POST", "/graphs/file", graph),
  loadGraphFile: (file: GraphFileJson) => request<LoadedGraph>("POST", "/graphs/load", file),
  enqueue: (graph: GraphJson, data: BatchDatum[][] = [], runs = 1) =>
    request<EnqueueResult>("POST", `${q}/enqueue_batch`, { batch: { graph, data, runs } }),
  queueStatus: () => request<QueueState>("GET", `${q}/status`),
  queueList: (cursor?: number, limit = 100) =>
    request<{ items: QueueItem[]; has_more: boolean; next_cursor: number | null }>(
      "GET",
      `${q}/list?limit=${limit}${cursor !== undefined ? `&cursor=${cursor}` : ""}`,
    ),
  cancelItem: (id: number) => request<QueueItem>("PUT", `${q}/i/${id}/cancel`),
  cancelBatch: (batchIds: string[]) => request<{ item_ids: number[] }>("PUT", `${q}/cancel_by_batch_ids`, { batch_ids: batchIds }),
  retry: (ids: number[]) => request<{ item_ids: number[] }>("PUT", `${q}/retry_items_by_id`, { item_ids: ids }),
  clear: () => request<{ deleted: number }>("PUT", `${q}/clear`),
  prune: () => request<{ deleted: number }>("PUT", `${q}/prune`),
  move: (id: number, where: MoveTo) => request<QueueItem>("PUT", `${q}/i/${id}/move`, where),
  workflows: () => request<Page<WorkflowSummary>>("GET", "/workflows?limit=500"),
  workflow: (id: string, version?: number) =>
    request<SavedWorkflow>("GET", `/workflows/${enc(id)}${version ? `?version=${version}` : ""}`),
  saveWorkflow: (id: string, doc: WorkflowDoc) => request<SavedWorkflow>("POST", `/workflows/${enc(id)}/versions`, doc),
  deleteWorkflow: (id: string) => request<{ deleted: number }>("DELETE", `/workflows/${enc(id)}`),
  enqueueWorkflow: (id: string, inputs: Record<string, unknown>, runs = 1) =>
    request<EnqueueResult>("POST", `/workflows/${enc(id)}/enqueue`, { inputs, runs, queue_id: QUEUE }),
  pause: () => request<QueueState>("PUT", `${q}/processor/pause`),
  resume: () => request<QueueState>("PUT", `${q}/processor/resume`),
};

export const imageUrl = (name: string) => `${API}/images/i/${enc(name)}/full`;
export const thumbUrl = (name: string) => `${API}/images/i/${enc(name)}/thumbnail`;

/** The image names in a node output (`{image: {image_name}}`, or a list of them in `collection`). */
export function imagesInResult(result: unknown): string[] {
  const out: string[] = [];
  const visit = (v: unknown, depth: number) => {
    if (!v || typeof v !== "object" || depth > 3) return;
    if (Array.isArray(v)) return v.forEach((x) => visit(x, depth + 1));
    const o = v as Record<string, unknown>;
    if (typeof o.image_name === "string") out.push(o.image_name);
    else Object.values(o).forEach((x) => visit(x, depth + 1));
  };
  visit(result, 0);
  return out;
}
