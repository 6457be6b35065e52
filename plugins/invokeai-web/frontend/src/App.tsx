import { lazy, Suspense, useEffect, useState, type FormEvent, type KeyboardEvent } from "react";
import { api, onUnauthorized } from "./lib/api";
import { connect, reconnect, useConnection, useServerEvents } from "./lib/events";
import { Gallery } from "./screens/Gallery";
import { Generate } from "./screens/Generate";
import { QueueScreen } from "./screens/Queue";
import { SystemScreen } from "./screens/System";
import { StoreProvider, TABS, useStore } from "./store";

// The editor (React Flow) is its own chunk: the other screens load without it.
const Workflow = lazy(() => import("./screens/Workflow"));

function Shell({ onSignOut }: { onSignOut: (() => void) | null }) {
  const { tab, setTab, notes, dismiss, reloadCatalog, bumpGallery } = useStore();
  const conn = useConnection();
  useEffect(() => {
    connect();
  }, []);
  useEffect(() => {
    if (conn !== "connected") return;
    reloadCatalog();
    bumpGallery(); // images made while we were disconnected
  }, [conn, reloadCatalog, bumpGallery]);
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
        {onSignOut && (
          <button className="button small" onClick={onSignOut} data-testid="sign-out">
            Sign out
          </button>
        )}
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

/** The access-token form, shown when the server needs a token and this browser has not signed in. */
function SignIn({ onDone, expired }: { onDone: () => void; expired: boolean }) {
  const [token, setToken] = useState("");
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const submit = (e: FormEvent) => {
    e.preventDefault();
    setBusy(true);
    setError(null);
    api
      .login(token)
      .then(onDone)
      .catch((err) => setError(err?.status === 401 ? "That is not this server's access token." : String(err?.message ?? err)))
      .finally(() => setBusy(false));
  };
  return (
    <div className="app">
      <header className="topbar">
        <span className="brand">InvokeAI Core</span>
      </header>
      <main className="panel">
        <form className="card sign-in" onSubmit={submit} aria-labelledby="sign-in-title">
          <h2 id="sign-in-title">Sign in</h2>
          <p className="muted">
            {expired ? "Your session ended. " : ""}This server needs its access token (<code>plugins.web.access_token</code>).
          </p>
          <label>
            Access token
            <input
              type="password"
              autoComplete="current-password"
              value={token}
              onChange={(e) => setToken(e.target.value)}
              required
              autoFocus
              data-testid="token"
            />
          </label>
          {error && (
            <p className="error-text" role="alert">
              {error}
            </p>
          )}
          <button className="button" type="submit" disabled={busy || !token}>
            {busy ? "Signing in…" : "Sign in"}
          </button>
        </form>
      </main>
    </div>
  );
}

type Auth = "checking" | "open" | "signed-in" | "sign-in" | "expired";

export function App() {
  const [auth, setAuth] = useState<Auth>("checking");
  useEffect(() => {
    api
      .authStatus()
      .then((s) => setAuth(!s.required ? "open" : s.authenticated ? "signed-in" : "sign-in"))
      .catch(() => setAuth("open")); // unreachable: the shell explains it and keeps retrying
    return onUnauthorized(() => setAuth((a) => (a === "signed-in" ? "expired" : a === "open" ? "sign-in" : a)));
  }, []);
  if (auth === "checking") return null;
  if (auth === "sign-in" || auth === "expired")
    return (
      <SignIn
        expired={auth === "expired"}
        onDone={() => {
          setAuth("signed-in");
          reconnect();
        }}
      />
    );
  const signOut = () => {
    api.logout().finally(() => setAuth("sign-in"));
  };
  return (
    <StoreProvider>
      <Shell onSignOut={auth === "signed-in" ? signOut : null} />
    </StoreProvider>
  );
}
