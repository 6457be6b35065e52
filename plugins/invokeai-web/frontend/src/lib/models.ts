/** Installed models (GET /api/v1/models) as the screens offer them: by type, by base. */
import type { ModelRecord } from "./api";

/** A record's type; an older server's records have none and are all whole (main) models. */
export const modelType = (m: ModelRecord): string => (typeof m.type === "string" && m.type ? m.type : "main");

/** The models of a type, for a base when one is given (models of base "any" fit every base). */
export function modelsOf(models: ModelRecord[] | null | undefined, type: string, base?: string): ModelRecord[] {
  return (models ?? []).filter((m) => modelType(m) === type && (!base || !m.base || m.base === "any" || m.base === base));
}

export const modelLabel = (m: ModelRecord): string => `${m.name}${m.base ? ` (${m.base})` : ""}`;

/** Models grouped by type, whole models first, then the other types by name. */
export function modelGroups(models: ModelRecord[]): [string, ModelRecord[]][] {
  const groups = new Map<string, ModelRecord[]>();
  for (const m of models) groups.set(modelType(m), [...(groups.get(modelType(m)) ?? []), m]);
  return [...groups.entries()].sort(([a], [b]) => (a === "main" ? -1 : b === "main" ? 1 : a.localeCompare(b)));
}

/** A LoRA as the generation nodes take it. */
export interface LoraChoice {
  name: string;
  weight: number;
}
/** A ControlNet as the generation nodes take it (the backend's ControlField), before the image is chosen. */
export interface ControlChoice {
  control_model: string;
  image: string | null;
  control_weight: number;
  begin_step_percent: number;
  end_step_percent: number;
  resize_mode: string;
}

/** The `loras` and `control` values of a txt2img/img2img node; left out when empty (an older server
 * may not know the field). Throws with a readable message when a ControlNet has no image or a bad range. */
export function guidanceInputs(loras: LoraChoice[], control: ControlChoice | null): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  if (loras.length) out.loras = loras.map((l) => ({ name: l.name, weight: l.weight }));
  if (control) {
    if (!control.image) throw new Error(`Choose a control image for the ControlNet ${control.control_model} (upload one or pick a gallery image).`);
    if (control.begin_step_percent > control.end_step_percent)
      throw new Error("The ControlNet's begin step percent is after its end step percent.");
    const { image, ...rest } = control;
    out.control = [{ image: { image_name: image }, ...rest }];
  }
  return out;
}
