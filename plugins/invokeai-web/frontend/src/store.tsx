/** App-wide state shared by the screens: notifications, the img2img source, a workflow to open. */
import { createContext, useCallback, useContext, useEffect, useMemo, useRef, useState, type ReactNode } from "react";
import type { GraphJson, ModelRecord } from "./lib/api";
import { api } from "./lib/api";
import { nodeTemplate, type NodeTemplate } from "./lib/schema";

export type Tab = "generate" | "gallery" | "queue" | "workflow" | "system";
export const TABS: [Tab, string][] = [
  ["generate", "Generate"],
  ["gallery", "Gallery"],
  ["queue", "Queue"],
  ["workflow", "Workflow"],
  ["system", "Plugins & models"],
];

export interface Note {
  id: number;
  kind: "error" | "info";
  text: string;
}

interface Store {
  tab: Tab;
  setTab: (t: Tab) => void;
  notify: (text: string, kind?: Note["kind"]) => void;
  notes: Note[];
  dismiss: (id: number) => void;
  img2img: string | null;
  setImg2img: (name: string | null) => void;
  workflowToLoad: GraphJson | null;
  openWorkflow: (g: GraphJson | null) => void;
  templates: NodeTemplate[] | null;
  templatesError: string | null;
  models: ModelRecord[] | null;
  modelsError: string | null;
  reloadCatalog: () => void;
  galleryVersion: number;
  bumpGallery: () => void;
}

const Ctx = createContext<Store | null>(null);

export function useStore(): Store {
  const s = useContext(Ctx);
  if (!s) throw new Error("useStore outside StoreProvider");
  return s;
}

export function errorText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

function tabFromHash(): Tab {
  const h = window.location.hash.replace(/^#\/?/, "");
  return (TABS.find(([t]) => t === h)?.[0] ?? "generate") as Tab;
}

export function StoreProvider({ children }: { children: ReactNode }) {
  const [tab, setTabState] = useState<Tab>(tabFromHash);
  const [notes, setNotes] = useState<Note[]>([]);
  const [img2img, setImg2img] = useState<string | null>(null);
  const [workflowToLoad, openWorkflow] = useState<GraphJson | null>(null);
  const [templates, setTemplates] = useState<NodeTemplate[] | null>(null);
  const [templatesError, setTemplatesError] = useState<string | null>(null);
  const [models, setModels] = useState<ModelRecord[] | null>(null);
  const [modelsError, setModelsError] = useState<string | null>(null);
  const [galleryVersion, setGalleryVersion] = useState(0);
  const nextId = useRef(1);

  const setTab = useCallback((t: Tab) => {
    setTabState(t);
    if (window.location.hash !== `#${t}`) history.replaceState(null, "", `#${t}`);
  }, []);
  useEffect(() => {
    const f = () => setTabState(tabFromHash());
    window.addEventListener("hashchange", f);
    return () => window.removeEventListener("hashchange", f);
  }, []);

  const dismiss = useCallback((id: number) => setNotes((n) => n.filter((x) => x.id !== id)), []);
  const notify = useCallback(
    (text: string, kind: Note["kind"] = "info") => {
      const id = nextId.current++;
      setNotes((n) => [...n.filter((x) => x.text !== text).slice(-4), { id, kind, text }]);
      if (kind === "info") setTimeout(() => dismiss(id), 4000);
    },
    [dismiss],
  );

  const reloadCatalog = useCallback(() => {
    api
      .nodes()
      .then((nodes) => {
        setTemplates(nodes.map(nodeTemplate));
        setTemplatesError(null);
      })
      .catch((e) => setTemplatesError(errorText(e)));
    api
      .models()
      .then((m) => {
        setModels(m);
        setModelsError(null);
      })
      .catch((e) => {
        setModels([]);
        setModelsError(
          e?.status === 404 ? "No model manager: install the invokeai-diffusers plugin to list models." : errorText(e),
        );
      });
  }, []);
  useEffect(reloadCatalog, [reloadCatalog]);
  const bumpGallery = useCallback(() => setGalleryVersion((v) => v + 1), []);

  const value = useMemo<Store>(
    () => ({
      tab,
      setTab,
      notify,
      notes,
      dismiss,
      img2img,
      setImg2img,
      workflowToLoad,
      openWorkflow,
      templates,
      templatesError,
      models,
      modelsError,
      reloadCatalog,
      galleryVersion,
      bumpGallery,
    }),
    [tab, setTab, notify, notes, dismiss, img2img, workflowToLoad, templates, templatesError, models, modelsError, reloadCatalog, galleryVersion, bumpGallery],
  );
  return <Ctx.Provider value={value}>{children}</Ctx.Provider>;
}
