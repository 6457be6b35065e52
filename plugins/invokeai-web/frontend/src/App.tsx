import { lazy, Suspense, useEffect, type KeyboardEvent } from "react";
import { connect, useConnection, useServerEvents } from "./lib/events";
import { Gallery } from "./screens/Gallery";
import { Generate } from "./screens/Generate";
import { QueueScreen } from "./screens/Queue";
import { SystemScreen } from "./screens/System";
import { StoreProvider, TABS, useStore } from "./store";

// The editor (React Flow) is its own chunk: the other screens load without it.
const Workflow = lazy(() => import("./screens/Workflow"));

function Shell() {
  const { tab, setTab, notes, dismiss, reloadCatalog, bumpGallery } = useStore();
  const conn = useConnection();
  useEffect(() => {
    connect();
  }, []);
  useEffect(() => {
    if (conn === "connected") reloadCatalog();
  }, [conn, reloadCatalog]);
  useServerEvents(
    (e) => {
      if (e.event === "queue_item_status_changed" && e.status === "completed") bumpGallery();
    },
    [bumpGallery],
  );

  const onTabKey = (e: KeyboardEvent<HTMLElement>) => {
    const i = TABS.findIndex(([t]) => t === tab);
    const next = e.key === "ArrowRight" ? i + 1 : e.key === "ArrowLeft" ? i - 1 : null;
    if (next === null) return;
    e.preventDefault();
    const t = TABS[(next + TABS.length) % TABS.length][0];
    setTab(t);
    document.getElementById(`tab-${t}`)?.focus();
  };

  return (
    <div className="app">
      <header className="topbar">
        <span className="brand">InvokeAI Core</span>
        <nav role="tablist" aria-label="Screens" onKeyDown={onTabKey}>
          {TABS.map(([t, label]) => (
            <button
              key={t}
              id={`tab-${t}`}
              role="tab"
              aria-selected={tab === t}
              aria-controls={`panel-${t}`}
              tabIndex={tab === t ? 0 : -1}
              className={tab === t ? "tab active" : "tab"}
              onClick={() => setTab(t)}
            >
              {label}
            </button>
          ))}
        </nav>
        <span className={`conn conn-${conn}`} role="status" data-testid="connection">
          {conn === "connected" ? "● live" : conn === "connecting" ? "○ connecting…" : "○ offline"}
        </span>
      </header>
      {conn === "disconnected" && (
        <div className="banner error" role="alert" data-testid="offline-banner">
          The server is unreachable: live updates are paused and requests will fail. Is <code>invokeai serve</code>{" "}
          running? Reconnecting…
        </div>
      )}
      <div className="notes" aria-live="polite">
        {notes.map((n) => (
          <div key={n.id} className={`note ${n.kind}`} role={n.kind === "error" ? "alert" : "status"}>
            <span>{n.text}</span>
            <button className="icon" aria-label="Dismiss" onClick={() => dismiss(n.id)}>
              ×
            </button>
          </div>
        ))}
      </div>
      <main id={`panel-${tab}`} role="tabpanel" aria-labelledby={`tab-${tab}`} className="panel">
        {tab === "generate" && <Generate />}
        {tab === "gallery" && <Gallery />}
        {tab === "queue" && <QueueScreen />}
        {tab === "workflow" && (
          <Suspense fallback={<p className="muted">Loading the editor…</p>}>
            <Workflow />
          </Suspense>
        )}
        {tab === "system" && <SystemScreen />}
      </main>
    </div>
  );
}

export function App() {
  return (
    <StoreProvider>
      <Shell />
    </StoreProvider>
  );
}
