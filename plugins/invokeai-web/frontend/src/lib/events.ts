/** Live events: one Socket.IO connection, subscribed to the default queue's room. */
import { useEffect, useSyncExternalStore } from "react";
import { io, type Socket } from "socket.io-client";
import { QUEUE } from "./api";

export interface ServerEvent {
  event: string;
  timestamp: number;
  session_id: string | null;
  queue_id: string | null;
  item_id: number | null;
  node_id?: string;
  source_node_id?: string;
  invocation_type?: string;
  step?: number;
  total?: number;
  message?: string | null;
  image?: { width: number; height: number; dataURL: string } | null;
  result?: Record<string, unknown>;
  error_type?: string;
  error_message?: string;
  error?: string;
  status?: string;
  [key: string]: unknown;
}

export const EVENT_NAMES = [
  "invocation_started",
  "invocation_progress",
  "invocation_complete",
  "invocation_error",
  "session_started",
  "session_complete",
  "session_canceled",
  "queue_item_status_changed",
  "batch_enqueued",
  "model_load_started",
  "model_load_complete",
  "model_unloaded",
] as const;

type Listener = (e: ServerEvent) => void;
export type ConnState = "connecting" | "connected" | "disconnected";

let socket: Socket | null = null;
let state: ConnState = "connecting";
const listeners = new Set<Listener>();
// Recent events, so a screen can catch up on an item whose events came before the enqueue response.
const recent: ServerEvent[] = [];
const RECENT_MAX = 2000;

/** The recent events of these queue items, oldest first. */
export function recentEvents(itemIds: number[]): ServerEvent[] {
  return recent.filter((e) => e.item_id != null && itemIds.includes(e.item_id));
}
const stateListeners = new Set<() => void>();

function setState(s: ConnState) {
  state = s;
  stateListeners.forEach((f) => f());
}

export function connect(): Socket {
  if (socket) return socket;
  socket = io({ path: "/socket.io/", transports: ["websocket", "polling"], reconnectionDelayMax: 3000 });
  socket.on("connect", () => {
    setState("connected");
    socket!.emit("subscribe_queue", { queue_id: QUEUE });
  });
  socket.on("disconnect", (reason) => {
    setState("disconnected");
    // The server cuts off a client that fell far behind (or restarts); socket.io-client retries by
    // itself except after a server-side disconnect, so come back, and the screens catch up on connect.
    if (reason === "io server disconnect") window.setTimeout(() => socket?.connect(), 1000);
  });
  socket.on("connect_error", () => setState("disconnected"));
  for (const name of EVENT_NAMES) socket.on(name, (payload: ServerEvent) => {
      const e = { ...payload, event: name };
      recent.push(e);
      if (recent.length > RECENT_MAX) recent.splice(0, recent.length - RECENT_MAX);
      listeners.forEach((f) => f(e));
    });
  return socket;
}

/** Connect again after signing in: a refused handshake is not retried by socket.io-client. */
export function reconnect(): void {
  if (socket && !socket.connected) {
    setState("connecting");
    socket.connect();
  }
}

/** Call `fn` for every event while the component is mounted. */
export function useServerEvents(fn: Listener, deps: unknown[]) {
  useEffect(() => {
    listeners.add(fn);
    return () => {
      listeners.delete(fn);
    };
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, deps);
}

export function useConnection(): ConnState {
  return useSyncExternalStore(
    (cb) => {
      stateListeners.add(cb);
      return () => stateListeners.delete(cb);
    },
    () => state,
  );
}
