/**
 * Node templates from the API's node schemas (GET /api/v1/nodes), and the widget each input gets.
 *
 * A node schema is the invocation's JSON schema plus UI metadata per field: `field_kind`
 * ("input"/"output"), `input` ("any": a value or a connection, "connection": only a connection,
 * "direct": only a value), `ui_type` (e.g. "model"), `ui_hidden`, `ui_component` ("textarea"),
 * `orig_required`, limits (minimum, maximum, exclusive*, multipleOf), `enum`, `default`.
 *
 * A model input may say which installed models fit it: `ui_model_type` (a model record's `type`, or
 * a list of them: "main", "lora", "controlnet", ...) and `ui_model_base` ("sd-1", ...), or the short
 * form `ui_type: "model:controlnet"` (`"model:lora,embedding"` for several). Without a hint every
 * installed model is offered.
 */
import { type JsonSchema, type TypeDesc, refName, schemaToType } from "./typecompat";

export interface NodeInfo {
  type: string;
  title: string;
  description: string;
  category: string;
  tags: string[];
  version: string;
  cacheable?: boolean;
  plugin: string;
  plugin_version?: string;
  output_type: string;
  schema: JsonSchema;
}

export type Widget =
  | { kind: "none" } // connection only
  | { kind: "hidden" }
  | { kind: "number"; integer: boolean; min?: number; max?: number; step?: number }
  | { kind: "select"; options: (string | number | boolean | null)[] }
  | { kind: "text"; multiline: boolean }
  | { kind: "checkbox" }
  | { kind: "model"; modelTypes?: string[]; modelBases?: string[] }
  | { kind: "image" }
  | { kind: "color" }
  | { kind: "json" };

export interface FieldTemplate {
  name: string;
  title: string;
  description: string;
  type: TypeDesc;
  required: boolean;
  input: "any" | "connection" | "direct";
  default?: unknown;
  hasDefault: boolean;
  widget: Widget;
  nullable: boolean;
  /** For a list of models (`list[LoRAField]`, `list[ControlField]`): the fields of one item. */
  itemFields?: FieldTemplate[];
}

export interface NodeTemplate {
  type: string;
  title: string;
  description: string;
  category: string;
  tags: string[];
  plugin: string;
  version: string;
  inputs: FieldTemplate[];
  outputs: FieldTemplate[];
}

const RESERVED = new Set(["id", "type", "use_cache"]);

function deref(schema: JsonSchema, defs: Record<string, JsonSchema>): JsonSchema {
  if (typeof schema.$ref === "string") return defs[refName(schema.$ref)] ?? schema;
  if (Array.isArray(schema.allOf) && schema.allOf.length === 1) return deref(schema.allOf[0] as JsonSchema, defs);
  return schema;
}

/** The schema without its `null` alternative (`X | None`), and whether there was one. */
export function stripNull(schema: JsonSchema): [JsonSchema, boolean] {
  const alts = (schema.anyOf ?? schema.oneOf) as JsonSchema[] | undefined;
  if (Array.isArray(alts)) {
    const rest = alts.filter((a) => a.type !== "null");
    if (rest.length < alts.length) {
      const { anyOf: _a, oneOf: _o, ...meta } = schema;
      void _a;
      void _o;
      return [rest.length === 1 ? { ...meta, ...rest[0] } : { ...meta, anyOf: rest }, true];
    }
  }
  return [schema, false];
}

const names = (v: unknown): string[] | undefined => {
  const list = (Array.isArray(v) ? v : typeof v === "string" ? v.split(",") : [])
    .map((x) => String(x).trim())
    .filter(Boolean);
  return list.length ? list : undefined;
};

/** A model picker, with the model types and bases the field's hints ask for (none: any model). */
export function modelWidget(field: JsonSchema): Extract<Widget, { kind: "model" }> | undefined {
  const ui = typeof field.ui_type === "string" ? field.ui_type : "";
  if (ui !== "model" && !ui.startsWith("model:")) return undefined;
  const w: Extract<Widget, { kind: "model" }> = { kind: "model" };
  const types = names(field.ui_model_type) ?? names(ui.slice("model:".length));
  const bases = names(field.ui_model_base);
  if (types) w.modelTypes = types;
  if (bases) w.modelBases = bases;
  return w;
}

/** Whether an installed model fits a model picker (its `type` missing: an older server's main model). */
export function modelFits(w: Extract<Widget, { kind: "model" }>, m: { type?: unknown; base?: unknown }): boolean {
  if (w.modelTypes && !w.modelTypes.includes(typeof m.type === "string" ? m.type : "main")) return false;
  if (w.modelBases && typeof m.base === "string" && m.base !== "any" && !w.modelBases.includes(m.base)) return false;
  return true;
}

/** The widget for an input field, from its schema and UI hints. */
export function widgetFor(field: JsonSchema, defs: Record<string, JsonSchema> = {}): Widget {
  if (field.ui_hidden === true) return { kind: "hidden" };
  if (field.input === "connection") return { kind: "none" };
  const model = modelWidget(field);
  if (model) return model;
  if (field.ui_type === "image") return { kind: "image" };
  const [bare] = stripNull(field);
  const ref = typeof bare.$ref === "string" ? refName(bare.$ref) : undefined;
  if (ref === "ImageField") return { kind: "image" };
  if (ref === "ColorField") return { kind: "color" };
  const s = deref(bare, defs);
  if (Array.isArray(s.enum)) return { kind: "select", options: s.enum as (string | number)[] };
  if ("const" in s) return { kind: "select", options: [s.const as string] };
  switch (s.type) {
    case "boolean":
      return { kind: "checkbox" };
    case "integer":
    case "number": {
      const integer = s.type === "integer";
      let min = typeof s.minimum === "number" ? s.minimum : undefined;
      let max = typeof s.maximum === "number" ? s.maximum : undefined;
      if (typeof s.exclusiveMinimum === "number") min = integer ? s.exclusiveMinimum + 1 : s.exclusiveMinimum;
      if (typeof s.exclusiveMaximum === "number") max = integer ? s.exclusiveMaximum - 1 : s.exclusiveMaximum;
      const step = typeof s.multipleOf === "number" ? s.multipleOf : integer ? 1 : undefined;
      return { kind: "number", integer, min, max, step };
    }
    case "string":
      return { kind: "text", multiline: field.ui_component === "textarea" };
  }
  return { kind: "json" };
}

/** The fields of the model a list field holds (`list[ControlField]` -> ControlField's fields). */
function itemFields(prop: JsonSchema, defs: Record<string, JsonSchema>, depth: number): FieldTemplate[] | undefined {
  const [bare] = stripNull(prop);
  if (bare.type !== "array" || !bare.items || typeof bare.items !== "object" || depth > 2) return undefined;
  const item = deref(bare.items as JsonSchema, defs);
  const props = item.properties as Record<string, JsonSchema> | undefined;
  if (item.type !== "object" || !props) return undefined;
  const required = new Set((item.required as string[]) ?? []);
  return Object.entries(props).map(([n, p]) => fieldTemplate(n, p, required.has(n), defs, depth + 1));
}

function fieldTemplate(name: string, prop: JsonSchema, required: boolean, defs: Record<string, JsonSchema>, depth = 0): FieldTemplate {
  const [, nullable] = stripNull(prop);
  const input = (prop.input as FieldTemplate["input"]) ?? "any";
  const items = itemFields(prop, defs, depth);
  return {
    name,
    title: (prop.title as string) ?? name,
    description: (prop.description as string) ?? "",
    type: schemaToType(prop),
    required: prop.orig_required === true || required,
    input,
    default: prop.default,
    hasDefault: "default" in prop,
    widget: widgetFor(prop, defs),
    nullable,
    ...(items ? { itemFields: items } : {}),
  };
}

export function nodeTemplate(info: NodeInfo): NodeTemplate {
  const schema = info.schema;
  const defs = (schema.$defs ?? {}) as Record<string, JsonSchema>;
  const props = (schema.properties ?? {}) as Record<string, JsonSchema>;
  const required = new Set((schema.required as string[]) ?? []);
  const inputs = Object.entries(props)
    .filter(([name, p]) => !RESERVED.has(name) && (p.field_kind ?? "input") === "input")
    .map(([name, p]) => fieldTemplate(name, p, required.has(name), defs));
  const out = (schema.output ?? {}) as JsonSchema;
  const outDefs = (out.$defs ?? {}) as Record<string, JsonSchema>;
  const outputs = Object.entries((out.properties ?? {}) as Record<string, JsonSchema>)
    .filter(([name]) => name !== "type")
    .map(([name, p]) => fieldTemplate(name, p, true, outDefs));
  return {
    type: info.type,
    title: info.title,
    description: info.description,
    category: info.category || "other",
    tags: info.tags ?? [],
    plugin: info.plugin,
    version: info.version,
    inputs,
    outputs,
  };
}

/** Whether an input can take a connection (anything but `direct`). */
export const acceptsConnection = (f: FieldTemplate) => f.input !== "direct";
/** Whether an input shows a value widget (anything but connection-only and hidden fields). */
export const hasWidget = (f: FieldTemplate) => f.widget.kind !== "none" && f.widget.kind !== "hidden";

/** The initial value of an input in the editor (its default, or an empty value for its widget). */
export function initialValue(f: FieldTemplate): unknown {
  if (f.hasDefault) return structuredClone(f.default);
  switch (f.widget.kind) {
    case "checkbox":
      return false;
    case "number":
      return f.widget.min ?? 0;
    case "text":
    case "model":
      return "";
    case "select":
      return f.widget.options[0];
  }
  return undefined;
}

/** Clamp a typed number to a number widget's limits (and to an integer for integer fields). */
export function coerceNumber(w: Extract<Widget, { kind: "number" }>, raw: string): number | undefined {
  if (raw.trim() === "") return undefined;
  let n = Number(raw);
  if (!Number.isFinite(n)) return undefined;
  if (w.integer) n = Math.round(n);
  if (w.min !== undefined && n < w.min) n = w.min;
  if (w.max !== undefined && n > w.max) n = w.max;
  return n;
}

/** Templates grouped by category (sorted), filtered by a search over type, title, tags and description. */
export function groupTemplates(templates: NodeTemplate[], query: string): [string, NodeTemplate[]][] {
  const q = query.trim().toLowerCase();
  const groups = new Map<string, NodeTemplate[]>();
  for (const t of templates) {
    if (q) {
      const hay = [t.type, t.title, t.category, t.description, ...t.tags].join(" ").toLowerCase();
      if (!q.split(/\s+/).every((w) => hay.includes(w))) continue;
    }
    const list = groups.get(t.category) ?? [];
    list.push(t);
    groups.set(t.category, list);
  }
  return [...groups.entries()]
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([c, list]) => [c, list.sort((a, b) => a.title.localeCompare(b.title))]);
}

export function colorToHex(c: unknown): string {
  const v = (c ?? {}) as { r?: number; g?: number; b?: number };
  const h = (n: number | undefined) => Math.max(0, Math.min(255, n ?? 0)).toString(16).padStart(2, "0");
  return `#${h(v.r)}${h(v.g)}${h(v.b)}`;
}

export function hexToColor(hex: string, alpha = 255): { r: number; g: number; b: number; a: number } {
  const m = /^#?([0-9a-f]{2})([0-9a-f]{2})([0-9a-f]{2})$/i.exec(hex);
  if (!m) return { r: 0, g: 0, b: 0, a: alpha };
  return { r: parseInt(m[1], 16), g: parseInt(m[2], 16), b: parseInt(m[3], 16), a: alpha };
}
