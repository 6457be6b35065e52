import { useEffect, useMemo, useRef, useState, type FormEvent } from "react";
import { api, imagesInResult, thumbUrl, imageUrl, type GraphJson } from "../lib/api";
import { recentEvents, useServerEvents, type ServerEvent } from "../lib/events";
import { guidanceInputs, modelLabel, modelsOf, type ControlChoice, type LoraChoice } from "../lib/models";
import { outcome, progressText, type Run } from "../lib/run";
import type { FieldTemplate, Widget } from "../lib/schema";
import { errorText, useStore } from "../store";
import { ImagePicker } from "./ImagePicker";

const FALLBACK_SCHEDULERS = ["default", "ddim", "ddpm", "euler", "euler_a", "heun", "lms", "pndm", "dpmpp_2m", "dpmpp_2m_karras", "unipc"];
const MAX_SEED = 2 ** 32 - 1;
const LORA_WEIGHT = { default: 0.75, min: -2, max: 2 };

type NumberWidget = Extract<Widget, { kind: "number" }>;
/** The number limits of the first of these fields that has any (a list item's field, a node's input). */
function limitsOf(...fields: (FieldTemplate | undefined)[]): { min?: number; max?: number } {
  for (const f of fields) {
    const w = f?.widget as NumberWidget | undefined;
    if (w?.kind === "number" && (w.min !== undefined || w.max !== undefined)) return { min: w.min, max: w.max };
  }
  return {};
}
const field = (fields: FieldTemplate[] | undefined, name: string) => fields?.find((f) => f.name === name);
const clamp = (n: number, lo?: number, hi?: number) => Math.min(hi ?? Infinity, Math.max(lo ?? -Infinity, n));

/** A labelled number input for a fraction or weight (step 0.01), within its limits. */
function NumberField({
  label,
  title,
  className,
  limits,
  value,
  onChange,
  onBlur,
  ariaLabel,
  testId,
}: {
  label: string;
  title?: string;
  className?: string;
  limits: { min?: number; max?: number };
  value: number;
  onChange: (n: number) => void;
  onBlur?: () => void;
  ariaLabel: string;
  testId: string;
}) {
  return (
    <label title={title} className={className}>
      {label}
      <input
        type="number"
        min={limits.min}
        max={limits.max}
        step={0.01}
        value={value}
        onChange={(e) => {
          const n = Number(e.target.value);
          if (Number.isFinite(n)) onChange(n);
        }}
        onBlur={onBlur}
        aria-label={ariaLabel}
        data-testid={testId}
      />
    </label>
  );
}

export function Generate() {
  const { models, modelsError, templates, notify, img2img, setImg2img, setTab } = useStore();
  const [model, setModel] = useState("");
  const [prompt, setPrompt] = useState("a lighthouse at dusk, oil painting");
  const [negative, setNegative] = useState("");
  const [width, setWidth] = useState(256);
  const [height, setHeight] = useState(256);
  const [steps, setSteps] = useState(8);
  const [cfg, setCfg] = useState(7.5);
  const [scheduler, setScheduler] = useState("default");
  const [seed, setSeed] = useState(42);
  const [randomSeed, setRandomSeed] = useState(true);
  const [count, setCount] = useState(1);
  const [strength, setStrength] = useState(0.75);
  const [loras, setLoras] = useState<LoraChoice[]>([]);
  const [loraToAdd, setLoraToAdd] = useState("");
  const [control, setControl] = useState<ControlChoice | null>(null);
  const [run, setRun] = useState<Run | null>(null);
  const [results, setResults] = useState<string[]>([]);
  const [busy, setBusy] = useState(false);
  const runRef = useRef<Run | null>(null);
  runRef.current = run;
  const put = (n: Run | null) => {
    runRef.current = n;
    setRun(n);
  };

  // only whole models generate; LoRAs and ControlNets are offered for the chosen model's base
  const mainModels = useMemo(() => modelsOf(models, "main"), [models]);
  const base = mainModels.find((m) => m.name === model)?.base;
  const loraModels = useMemo(() => modelsOf(models, "lora", base), [models, base]);
  const controlModels = useMemo(() => modelsOf(models, "controlnet", base), [models, base]);
  useEffect(() => {
    if (models && !mainModels.some((m) => m.name === model)) setModel(mainModels[0]?.name ?? "");
  }, [models, mainModels, model]);
  // a model of another base: the LoRAs and the ControlNet chosen for the last one no longer fit
  useEffect(() => {
    if (!models) return;
    const fits = new Set(loraModels.map((m) => m.name));
    setLoras((ls) => (ls.every((l) => fits.has(l.name)) ? ls : ls.filter((l) => fits.has(l.name))));
    setControl((c) => (c && !controlModels.some((m) => m.name === c.control_model) ? null : c));
  }, [models, loraModels, controlModels]);
  const addable = loraModels.filter((m) => !loras.some((l) => l.name === m.name));
  useEffect(() => {
    if (!addable.some((m) => m.name === loraToAdd)) setLoraToAdd(addable[0]?.name ?? "");
  }, [addable, loraToAdd]);

  const schedulers = useMemo(() => {
    const t = templates?.find((x) => x.type === "txt2img")?.inputs.find((f) => f.name === "scheduler");
    return t?.widget.kind === "select" ? (t.widget.options as string[]) : FALLBACK_SCHEDULERS;
  }, [templates]);
  const canGenerate = templates === null || templates.some((t) => t.type === "txt2img");
  // the generation node's `loras` and `control` inputs (a server without them gets no such section)
  const genInputs = templates?.find((t) => t.type === (img2img ? "img2img" : "txt2img"))?.inputs;
  const lorasInput = field(genInputs, "loras");
  const controlInput = field(genInputs, "control");
  const controlNode = templates?.find((t) => t.type === "controlnet")?.inputs;
  const loraLimits = useMemo(() => {
    const l = limitsOf(field(lorasInput?.itemFields, "weight"));
    return { min: Math.max(LORA_WEIGHT.min, l.min ?? -Infinity), max: Math.min(LORA_WEIGHT.max, l.max ?? Infinity) };
  }, [lorasInput]);
  const controlSpec = useMemo(() => {
    const items = controlInput?.itemFields;
    const pick = (name: string) => [field(items, name), field(controlNode, name)] as const;
    const resize = pick("resize_mode").find((f) => f?.widget.kind === "select");
    const num = (name: string, fallback: number) => {
      const fs = pick(name);
      const d = fs.find((f) => typeof f?.default === "number")?.default;
      return { default: typeof d === "number" ? d : fallback, ...limitsOf(...fs) };
    };
    return {
      weight: num("control_weight", 1),
      begin: num("begin_step_percent", 0),
      end: num("end_step_percent", 1),
      resizeModes: resize?.widget.kind === "select" ? resize.widget.options.map(String) : [],
      resizeDefault: typeof resize?.default === "string" ? resize.default : undefined,
    };
  }, [controlInput, controlNode]);
  const chooseControl = (name: string) => {
    if (!name) return setControl(null);
    setControl((c) =>
      c
        ? { ...c, control_model: name }
        : {
            control_model: name,
            image: null,
            control_weight: controlSpec.weight.default,
            begin_step_percent: controlSpec.begin.default,
            end_step_percent: controlSpec.end.default,
            resize_mode: controlSpec.resizeDefault ?? controlSpec.resizeModes[0] ?? "just_resize",
          },
    );
  };
  const setControlValue = (patch: Partial<ControlChoice>) => setControl((c) => (c ? { ...c, ...patch } : c));
  const setLoraWeight = (name: string, weight: number) => setLoras((ls) => ls.map((l) => (l.name === name ? { ...l, weight } : l)));

  const handleRef = useRef<(e: ServerEvent) => void>(() => {});
  useServerEvents((e) => handleRef.current(e), []);
  handleRef.current = (e: ServerEvent) => {
    const r = runRef.current;
    if (!r || e.item_id == null || !r.itemIds.includes(e.item_id)) return;
    if (e.event === "invocation_progress") {
      if (r.finished.has(e.item_id)) return; // a step that raced the cancel: the item is over
      put({ ...r, step: e.step ?? 0, total: e.total ?? 0, preview: e.image?.dataURL ?? r.preview });
    } else if (e.event === "invocation_complete" && e.source_node_id === "gen") {
      const names = imagesInResult(e.result);
      if (names.length) {
        setResults((old) => [...names, ...old].slice(0, 12));
        put({ ...r, made: r.made + names.length });
      }
    } else if (e.event === "queue_item_status_changed" && ["completed", "failed", "canceled"].includes(String(e.status))) {
      if (r.finished.has(e.item_id)) return;
      const finished = new Set(r.finished).add(e.item_id);
      const next = {
        ...r,
        finished,
        failed: r.failed + (e.status === "failed" ? 1 : 0),
        canceled: r.canceled + (e.status === "canceled" ? 1 : 0),
        step: 0,
        total: 0,
      };
      if (e.status === "failed") notify(`Generation failed: ${e.error_message ?? e.error_type ?? "unknown error"}`, "error");
      put(finished.size >= r.itemIds.length ? { ...next, preview: null } : next);
    }
  };

  const state = run ? outcome(run) : null;
  const active = state === "running";
  // while running, finished items count (canceled ones too: nothing is left to do for them);
  // once over, only what completed: a canceled run does not show a full bar
  const doneCount = run ? run.finished.size - (active ? 0 : run.failed + run.canceled) : 0;
  const progress = run ? (doneCount + (active && run.total ? run.step / run.total : 0)) / run.itemIds.length : 0;
  const noImage = run !== null && !active && run.made === 0 && state !== "completed";

  async function invoke(ev: FormEvent) {
    ev.preventDefault();
    if (!model) {
      notify("Choose a model first (none is installed? run `invokeai models create-demo`).", "error");
      return;
    }
    const node: Record<string, unknown> = {
      id: "gen",
      type: img2img ? "img2img" : "txt2img",
      model,
      prompt,
      negative_prompt: negative,
      steps,
      cfg_scale: cfg,
      scheduler,
      seed,
    };
    try {
      Object.assign(node, guidanceInputs(loras, control));
    } catch (e) {
      notify(errorText(e), "error");
      return;
    }
    if (img2img) {
      node.image = { image_name: img2img };
      node.strength = strength;
    } else {
      node.width = width;
      node.height = height;
    }
    const graph: GraphJson = { nodes: { gen: node as GraphJson["nodes"][string] }, edges: [] };
    const seeds = Array.from({ length: count }, (_, i) =>
      randomSeed ? Math.floor(Math.random() * MAX_SEED) : (seed + i) % (MAX_SEED + 1),
    );
    setBusy(true);
    try {
      const res = await api.enqueue(graph, [[{ node_path: "gen", field_name: "seed", items: seeds }]]);
      put({
        batchId: res.batch_id,
        itemIds: res.item_ids,
        finished: new Set(),
        failed: 0,
        canceled: 0,
        made: 0,
        step: 0,
        total: 0,
        preview: null,
      });
      recentEvents(res.item_ids).forEach((ev) => handleRef.current(ev)); // events that beat the response
    } catch (e) {
      notify(errorText(e), "error");
    } finally {
      setBusy(false);
    }
  }

  async function cancel() {
    if (!run) return;
    try {
      await api.cancelBatch([run.batchId]);
    } catch (e) {
      notify(errorText(e), "error");
    }
  }

  const num = (set: (n: number) => void) => (e: { target: { value: string } }) => {
    const n = Number(e.target.value);
    if (Number.isFinite(n)) set(n);
  };

  return (
    <div className="generate">
      <form className="gen-form card" onSubmit={invoke} aria-label="Generation settings">
        <label>
          Model
          <select value={model} onChange={(e) => setModel(e.target.value)} data-testid="model" required>
            {!models?.length && <option value="">{models === null ? "loading…" : "no models installed"}</option>}
            {!mainModels.length && models?.length ? <option value="">no main model installed</option> : null}
            {mainModels.map((m) => (
              <option key={m.name} value={m.name}>
                {modelLabel(m)}
              </option>
            ))}
          </select>
        </label>
        {modelsError && <p className="error-text">{modelsError}</p>}
        {models && !mainModels.length && !modelsError && (
          <p className="muted">No models yet: run <code>invokeai models create-demo</code> or add your own.</p>
        )}
        <label>
          Prompt
          <textarea value={prompt} onChange={(e) => setPrompt(e.target.value)} rows={3} data-testid="prompt" />
        </label>
        <label>
          Negative prompt
          <textarea value={negative} onChange={(e) => setNegative(e.target.value)} rows={2} />
        </label>
        {img2img ? (
          <div className="img2img-source">
            <img src={thumbUrl(img2img)} alt="img2img source" width={64} height={64} />
            <label>
              Strength
              <input type="number" min={0} max={1} step={0.05} value={strength} onChange={num(setStrength)} />
            </label>
            <button type="button" onClick={() => setImg2img(null)}>
              Clear source
            </button>
          </div>
        ) : (
          <div className="row">
            <label>
              Width
              <input type="number" min={64} max={2048} step={8} value={width} onChange={num(setWidth)} data-testid="width" />
            </label>
            <label>
              Height
              <input type="number" min={64} max={2048} step={8} value={height} onChange={num(setHeight)} data-testid="height" />
            </label>
          </div>
        )}
        <div className="row">
          <label>
            Steps
            <input type="number" min={1} max={1000} value={steps} onChange={num(setSteps)} data-testid="steps" />
          </label>
          <label>
            CFG scale
            <input type="number" min={0} max={100} step={0.5} value={cfg} onChange={num(setCfg)} />
          </label>
        </div>
        <label>
          Scheduler
          <select value={scheduler} onChange={(e) => setScheduler(e.target.value)}>
            {schedulers.map((s) => (
              <option key={s}>{s}</option>
            ))}
          </select>
        </label>
        {lorasInput && models && (
          <fieldset className="extras" data-testid="loras">
            <legend>LoRAs</legend>
            {loraModels.length === 0 ? (
              <p className="muted small" data-testid="loras-hint">
                {modelsOf(models, "lora").length ? `No LoRA for ${base ?? "this model"} is installed.` : "No LoRA is installed."} Add one
                with <code>invokeai models add</code>.
              </p>
            ) : (
              <>
                {loras.map((l) => (
                  <div className="extra-row" key={l.name} data-testid="lora-row" data-lora={l.name}>
                    <span className="extra-name" title={l.name}>
                      {l.name}
                    </span>
                    <NumberField
                      className="inline"
                      label="Weight"
                      limits={loraLimits}
                      value={l.weight}
                      onChange={(n) => setLoraWeight(l.name, n)}
                      onBlur={() => setLoraWeight(l.name, clamp(l.weight, loraLimits.min, loraLimits.max))}
                      ariaLabel={`Weight of the LoRA ${l.name}`}
                      testId={`lora-weight-${l.name}`}
                    />
                    <button type="button" className="icon" aria-label={`Remove the LoRA ${l.name}`} onClick={() => setLoras((ls) => ls.filter((x) => x.name !== l.name))}>
                      ⨯
                    </button>
                  </div>
                ))}
                <div className="row">
                  <label>
                    Add a LoRA
                    <select value={loraToAdd} onChange={(e) => setLoraToAdd(e.target.value)} disabled={!addable.length} data-testid="lora-choice">
                      {!addable.length && <option value="">all added</option>}
                      {addable.map((m) => (
                        <option key={m.name} value={m.name}>
                          {modelLabel(m)}
                        </option>
                      ))}
                    </select>
                  </label>
                  <button
                    type="button"
                    disabled={!loraToAdd}
                    onClick={() => loraToAdd && setLoras((ls) => [...ls, { name: loraToAdd, weight: clamp(LORA_WEIGHT.default, loraLimits.min, loraLimits.max) }])}
                    data-testid="lora-add"
                  >
                    Add
                  </button>
                </div>
              </>
            )}
          </fieldset>
        )}
        {controlInput && models && (
          <fieldset className="extras" data-testid="controlnet">
            <legend>ControlNet</legend>
            {controlModels.length === 0 ? (
              <p className="muted small" data-testid="controlnet-hint">
                {modelsOf(models, "controlnet").length ? `No ControlNet for ${base ?? "this model"} is installed.` : "No ControlNet is installed."} Add
                one with <code>invokeai models add</code>.
              </p>
            ) : (
              <>
                <label>
                  ControlNet model
                  <select value={control?.control_model ?? ""} onChange={(e) => chooseControl(e.target.value)} data-testid="controlnet-model">
                    <option value="">none</option>
                    {controlModels.map((m) => (
                      <option key={m.name} value={m.name}>
                        {modelLabel(m)}
                      </option>
                    ))}
                  </select>
                </label>
                {control && (
                  <>
                    <div className="field">
                      <span className="field-label">Control image</span>
                      <ImagePicker
                        label="Control image"
                        value={control.image ? { image_name: control.image } : undefined}
                        onChange={(v) => setControlValue({ image: v?.image_name ?? null })}
                        testId="control-image"
                      />
                    </div>
                    <div className="row">
                      <NumberField
                        label="Weight"
                        limits={controlSpec.weight}
                        value={control.control_weight}
                        onChange={(n) => setControlValue({ control_weight: n })}
                        ariaLabel="ControlNet weight"
                        testId="control-weight"
                      />
                      <NumberField
                        label="From step"
                        title="The fraction of the steps the ControlNet starts acting at (0 = the first step)"
                        limits={{ min: controlSpec.begin.min ?? 0, max: controlSpec.begin.max ?? 1 }}
                        value={control.begin_step_percent}
                        onChange={(n) => setControlValue({ begin_step_percent: n })}
                        ariaLabel="ControlNet begin step percent (0–1)"
                        testId="control-begin"
                      />
                      <NumberField
                        label="To step"
                        title="The fraction of the steps the ControlNet stops acting at (1 = the last step)"
                        limits={{ min: controlSpec.end.min ?? 0, max: controlSpec.end.max ?? 1 }}
                        value={control.end_step_percent}
                        onChange={(n) => setControlValue({ end_step_percent: n })}
                        ariaLabel="ControlNet end step percent (0–1)"
                        testId="control-end"
                      />
                    </div>
                    {controlSpec.resizeModes.length > 0 && (
                      <label>
                        Resize mode
                        <select value={control.resize_mode} onChange={(e) => setControlValue({ resize_mode: e.target.value })} data-testid="control-resize">
                          {controlSpec.resizeModes.map((m) => (
                            <option key={m}>{m}</option>
                          ))}
                        </select>
                      </label>
                    )}
                  </>
                )}
              </>
            )}
          </fieldset>
        )}
        <div className="row">
          <label>
            Seed
            <input type="number" min={0} max={MAX_SEED} value={seed} disabled={randomSeed} onChange={num(setSeed)} data-testid="seed" />
          </label>
          <label className="check">
            <input type="checkbox" checked={randomSeed} onChange={(e) => setRandomSeed(e.target.checked)} /> Random
          </label>
        </div>
        <label>
          Images
          <input type="number" min={1} max={100} value={count} onChange={num(setCount)} data-testid="count" />
        </label>
        <div className="row actions">
          <button type="submit" className="primary" disabled={busy || !canGenerate} data-testid="invoke">
            Invoke
          </button>
          <button type="button" onClick={cancel} disabled={!active} data-testid="cancel">
            Cancel
          </button>
        </div>
        {!canGenerate && <p className="error-text">The invokeai-diffusers plugin is not loaded: no generation nodes.</p>}
      </form>
      <section className="gen-output card" aria-label="Progress and results">
        <div className="progress-wrap">
          <div
            className={`progress ${state ?? ""}`}
            role="progressbar"
            aria-label="Generation progress"
            aria-valuemin={0}
            aria-valuemax={100}
            aria-valuenow={Math.round(progress * 100)}
            aria-valuetext={run ? progressText(run) : "idle"}
            data-state={state ?? "idle"}
            data-testid="progress"
          >
            <div className="progress-fill" style={{ width: `${progress * 100}%` }} />
          </div>
          <span className={`run-text ${state ?? ""}`} data-testid="progress-text">
            {run ? progressText(run) : "idle"}
          </span>
        </div>
        <div className="stage">
          {run?.preview && active ? (
            <img src={run.preview} alt="Live preview" className="preview" data-testid="preview" />
          ) : noImage ? (
            <p className={`run-note ${state}`} role="status" data-testid="run-note">
              {state === "canceled" ? "Canceled" : "Failed"}: this run made no image.
              {results.length > 0 && " Earlier results are below."}
            </p>
          ) : results.length ? (
            <a href={imageUrl(results[0])} target="_blank" rel="noreferrer">
              <img src={imageUrl(results[0])} alt="Latest result" className="result" data-testid="result" />
            </a>
          ) : (
            <p className="muted">Results appear here. Images also go to the gallery.</p>
          )}
        </div>
        {results.length > (noImage ? 0 : 1) && (
          <div className="strip">
            {results.slice(noImage ? 0 : 1).map((n) => (
              <img key={n} src={thumbUrl(n)} alt={n} width={64} height={64} />
            ))}
          </div>
        )}
        {results.length > 0 && (
          <button type="button" className="link" onClick={() => setTab("gallery")}>
            Open the gallery →
          </button>
        )}
      </section>
    </div>
  );
}
