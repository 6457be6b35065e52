import { useCallback, useEffect, useRef, useState, type DragEvent } from "react";
import { api, type MoveTo, type QueueItem, type QueueState } from "../lib/api";
import { useConnection, useServerEvents } from "../lib/events";
import { errorText, useStore } from "../store";

function when(s?: string | null) {
  return s ? new Date(s).toLocaleTimeString() : "—";
}
export function duration(a?: string | null, b?: string | null): string {
  if (!a) return "—";
  const ms = (b ? new Date(b).getTime() : Date.now()) - new Date(a).getTime();
  return ms < 1000 ? `${Math.max(0, ms)} ms` : `${(ms / 1000).toFixed(1)} s`;
}

/** The pending items in the order they will run: drag one onto another to put it just before that
 * one, onto the end zone to put it last; the buttons do the same from the keyboard. A moved item
 * takes the priority of where it lands (docs/architecture.md, "Reordering the queue"). */
function PendingOrder({ items, move }: { items: QueueItem[]; move: (id: number, where: MoveTo) => void }) {
  const dragged = useRef<number | null>(null);
  const [over, setOver] = useState<number | "end" | null>(null);
  const drop = (target: number | "end") => {
    const id = dragged.current;
    dragged.current = null;
    setOver(null);
    if (id === null || id === target) return;
    move(id, target === "end" ? { to: "back" } : { before: target });
  };
  const zone = (target: number | "end") => ({
    onDragOver: (e: DragEvent) => {
      e.preventDefault();
      e.dataTransfer.dropEffect = "move";
      setOver(target);
    },
    onDragLeave: () => setOver((o) => (o === target ? null : o)),
    onDrop: (e: DragEvent) => {
      e.preventDefault();
      drop(target);
    },
  });
  return (
    <section className="pending-order">
      <h3>
        Up next <span className="muted small">drag to reorder</span>
      </h3>
      <ol data-testid="pending-order">
        {items.map((it, i) => (
          <li
            key={it.item_id}
            data-item-id={it.item_id}
            draggable
            className={over === it.item_id ? "drop-target" : ""}
            onDragStart={(e) => {
              dragged.current = it.item_id;
              e.dataTransfer.effectAllowed = "move";
              e.dataTransfer.setData("text/plain", String(it.item_id));
            }}
            onDragEnd={() => setOver(null)}
            {...zone(it.item_id)}
          >
            <span className="grip" aria-hidden>
              ⠿
            </span>
            <span className="pos">{i + 1}.</span> item {it.item_id}
            <span className="muted small"> priority {it.priority}</span>
            <span className="spacer" />
            <button disabled={i === 0} onClick={() => move(it.item_id, { to: "front" })} aria-label={`Move item ${it.item_id} to the front`}>
              Front
            </button>
            <button disabled={i === items.length - 1} onClick={() => move(it.item_id, { to: "back" })} aria-label={`Move item ${it.item_id} to the back`}>
              Back
            </button>
          </li>
        ))}
        <li className={`end-zone ${over === "end" ? "drop-target" : ""}`} data-testid="pending-end" {...zone("end")}>
          drop here to run last
        </li>
      </ol>
    </section>
  );
}

export function QueueScreen() {
  const { notify } = useStore();
  const [items, setItems] = useState<QueueItem[] | null>(null);
  const [state, setState] = useState<QueueState | null>(null);
  const [error, setError] = useState<string | null>(null);
  const timer = useRef<number | undefined>(undefined);

  const [pending, setPending] = useState<QueueItem[]>([]);
  const load = useCallback(() => {
    Promise.all([api.queueStatus(), api.queueList(undefined, 500)])
      .then(([s, l]) => {
        setState(s);
        setPending(l.items.filter((i) => i.status === "pending")); // queue order: runs first, first
        setItems([...l.items].reverse()); // newest first
        setError(null);
      })
      .catch((e) => setError(errorText(e)));
  }, []);
  useEffect(load, [load]);
  // Catch up after a reconnect: events sent while we were away are gone.
  const conn = useConnection();
  const wasDown = useRef(false);
  useEffect(() => {
    if (conn === "disconnected") wasDown.current = true;
    else if (conn === "connected" && wasDown.current) {
      wasDown.current = false;
      load();
    }
  }, [conn, load]);
  useServerEvents(
    (e) => {
      if (e.event !== "queue_item_status_changed" && e.event !== "batch_enqueued") return;
      window.clearTimeout(timer.current);
      timer.current = window.setTimeout(load, 150);
    },
    [load],
  );

  async function act(f: () => Promise<unknown>, done?: (r: unknown) => string) {
    try {
      const r = await f();
      if (done) notify(done(r));
      load();
    } catch (e) {
      notify(errorText(e), "error");
    }
  }

  const c = state?.queue;
  return (
    <div className="queue">
      <div className="toolbar">
        <span data-testid="queue-status" className={c?.paused ? "pill warn" : "pill"}>
          {c ? (c.paused ? "paused" : "running") : "…"}
        </span>
        {c && (
          <span className="muted" data-testid="queue-counts">
            {c.pending} pending · {c.in_progress} running · {c.completed} completed · {c.failed} failed · {c.canceled} canceled
          </span>
        )}
        <span className="spacer" />
        {c?.paused ? (
          <button onClick={() => act(api.resume, () => "Queue resumed")} data-testid="resume">
            Resume
          </button>
        ) : (
          <button onClick={() => act(api.pause, () => "Queue paused")} data-testid="pause">
            Pause
          </button>
        )}
        <button onClick={() => act(api.prune, (r) => `Removed ${(r as { deleted: number }).deleted} finished items`)}>
          Prune finished
        </button>
        <button
          className="danger"
          onClick={() => confirm("Delete every queue item but the running one?") && act(api.clear, (r) => `Cleared ${(r as { deleted: number }).deleted} items`)}
          data-testid="clear"
        >
          Clear
        </button>
        <button onClick={load}>Refresh</button>
      </div>
      {state && !state.processor.started && <p className="muted">This server runs no queue processor: items wait for a worker.</p>}
      {error && (
        <p className="error-text" role="alert">
          {error}
        </p>
      )}
      {pending.length > 1 && (
        <PendingOrder
          items={pending}
          move={(id, where) => act(() => api.move(id, where), () => `Moved item ${id}`)}
        />
      )}
      {items && items.length === 0 && <p className="muted">The queue is empty.</p>}
      {items && items.length > 0 && (
        <div className="table-wrap">
          <table className="items" data-testid="queue-table">
            <thead>
              <tr>
                <th>#</th>
                <th>Status</th>
                <th>Created</th>
                <th>Started</th>
                <th>Took</th>
                <th>Details</th>
                <th>Actions</th>
              </tr>
            </thead>
            <tbody>
              {items.map((it) => (
                <tr key={it.item_id} data-status={it.status}>
                  <td>{it.item_id}</td>
                  <td>
                    <span className={`pill s-${it.status}`}>{it.status.replace("_", " ")}</span>
                  </td>
                  <td>{when(it.created_at)}</td>
                  <td>{when(it.started_at)}</td>
                  <td>{it.started_at ? duration(it.started_at, it.completed_at) : "—"}</td>
                  <td className="details">
                    {it.error_message ? (
                      <span className="error-text">
                        {it.error_type}: {it.error_message}
                      </span>
                    ) : (
                      it.field_values
                        .map((f) => `${f.field_name ?? ""}=${JSON.stringify(f.value)}`)
                        .join(", ")
                    )}
                  </td>
                  <td>
                    {(it.status === "pending" || it.status === "in_progress") && (
                      <button onClick={() => act(() => api.cancelItem(it.item_id))} aria-label={`Cancel item ${it.item_id}`}>
                        Cancel
                      </button>
                    )}
                    {(it.status === "failed" || it.status === "canceled") && (
                      <button onClick={() => act(() => api.retry([it.item_id]), () => `Item ${it.item_id} queued again`)} aria-label={`Retry item ${it.item_id}`}>
                        Retry
                      </button>
                    )}
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
