import { describe, expect, it } from "vitest";
import { coerceNumber, groupTemplates, hexToColor, colorToHex, initialValue, modelFits, nodeTemplate, widgetFor, type NodeInfo } from "./schema";

const defs = { Mode: { enum: ["a", "b"], type: "string" } };

describe("schema -> widget", () => {
  it("numbers get min/max/step from the schema (exclusive bounds for integers)", () => {
    expect(widgetFor({ type: "integer", minimum: 1, maximum: 1000 })).toEqual({ kind: "number", integer: true, min: 1, max: 1000, step: 1 });
    expect(widgetFor({ type: "integer", exclusiveMinimum: 0, multipleOf: 8 })).toEqual({ kind: "number", integer: true, min: 1, max: undefined, step: 8 });
    expect(widgetFor({ type: "integer", minimum: 0, exclusiveMaximum: 4294967296 })).toMatchObject({ max: 4294967295 });
    expect(widgetFor({ type: "number", minimum: 0, maximum: 1 })).toEqual({ kind: "number", integer: false, min: 0, max: 1, step: undefined });
  });
  it("enums are selects (inline or by $ref)", () => {
    expect(widgetFor({ type: "string", enum: ["gaussian", "box"] })).toEqual({ kind: "select", options: ["gaussian", "box"] });
    expect(widgetFor({ $ref: "#/$defs/Mode" }, defs)).toEqual({ kind: "select", options: ["a", "b"] });
  });
  it("strings, textareas, booleans", () => {
    expect(widgetFor({ type: "string" })).toEqual({ kind: "text", multiline: false });
    expect(widgetFor({ type: "string", ui_component: "textarea" })).toEqual({ kind: "text", multiline: true });
    expect(widgetFor({ type: "boolean" })).toEqual({ kind: "checkbox" });
  });
  it("images, models and colors get pickers", () => {
    expect(widgetFor({ $ref: "#/$defs/ImageField" })).toEqual({ kind: "image" });
    expect(widgetFor({ anyOf: [{ $ref: "#/$defs/ImageField" }, { type: "null" }] })).toEqual({ kind: "image" });
    expect(widgetFor({ type: "string", ui_type: "model" })).toEqual({ kind: "model" });
    expect(widgetFor({ $ref: "#/$defs/ColorField" })).toEqual({ kind: "color" });
  });
  it("model pickers take the model type and base the schema asks for", () => {
    expect(widgetFor({ type: "string", ui_type: "model", ui_model_type: "controlnet" })).toEqual({ kind: "model", modelTypes: ["controlnet"] });
    expect(widgetFor({ type: "string", ui_type: "model", ui_model_type: ["main"], ui_model_base: "sdxl" })).toEqual({ kind: "model", modelTypes: ["main"], modelBases: ["sdxl"] });
    expect(widgetFor({ type: "string", ui_type: "model:lora, embedding" })).toEqual({ kind: "model", modelTypes: ["lora", "embedding"] });
    const cn = { kind: "model" as const, modelTypes: ["controlnet"], modelBases: ["sd-1"] };
    expect(modelFits(cn, { type: "controlnet", base: "sd-1" })).toBe(true);
    expect(modelFits(cn, { type: "controlnet", base: "sdxl" })).toBe(false);
    expect(modelFits(cn, { type: "main", base: "sd-1" })).toBe(false);
    expect(modelFits({ kind: "model", modelTypes: ["main"] }, { base: "sd-1" })).toBe(true); // no type: main
    expect(modelFits({ kind: "model" }, { type: "lora" })).toBe(true); // no hint: any model
  });
  it("connection-only and hidden fields have no widget; others fall back to JSON", () => {
    expect(widgetFor({ type: "integer", input: "connection" })).toEqual({ kind: "none" });
    expect(widgetFor({ type: "integer", ui_hidden: true })).toEqual({ kind: "hidden" });
    expect(widgetFor({ type: "array", items: { type: "integer" } })).toEqual({ kind: "json" });
  });
  it("numbers typed in are clamped and rounded", () => {
    const w = { kind: "number" as const, integer: true, min: 1, max: 10, step: 1 };
    expect(coerceNumber(w, "3.6")).toBe(4);
    expect(coerceNumber(w, "99")).toBe(10);
    expect(coerceNumber(w, "-5")).toBe(1);
    expect(coerceNumber(w, "")).toBeUndefined();
    expect(coerceNumber(w, "abc")).toBeUndefined();
  });
  it("colors round-trip through hex", () => {
    expect(colorToHex({ r: 255, g: 16, b: 0 })).toBe("#ff1000");
    expect(hexToColor("#ff1000")).toEqual({ r: 255, g: 16, b: 0, a: 255 });
  });
});

const blur: NodeInfo = {
  type: "img_blur",
  title: "Blur Image",
  description: "Blurs an image",
  category: "images",
  tags: ["image", "blur"],
  version: "1.0.0",
  plugin: "nodes",
  output_type: "image_output",
  schema: {
    $defs: { ImageField: { type: "object", properties: { image_name: { type: "string" } } } },
    properties: {
      type: { const: "img_blur" },
      id: { type: "string" },
      use_cache: { type: "boolean", default: true },
      image: { $ref: "#/$defs/ImageField", field_kind: "input", input: "any", orig_required: true },
      radius: { type: "number", default: 8, minimum: 0, maximum: 1024, field_kind: "input", input: "any" },
      blur_type: { type: "string", enum: ["gaussian", "box"], default: "gaussian", field_kind: "input", input: "any" },
    },
    required: ["type", "image"],
    output: {
      properties: {
        type: { const: "image_output" },
        image: { $ref: "#/$defs/ImageField", field_kind: "output" },
        width: { type: "integer", field_kind: "output" },
      },
    },
  },
};

describe("node templates", () => {
  it("inputs and outputs come from the schema, reserved fields left out", () => {
    const t = nodeTemplate(blur);
    expect(t.inputs.map((f) => f.name)).toEqual(["image", "radius", "blur_type"]);
    expect(t.outputs.map((f) => f.name)).toEqual(["image", "width"]);
    expect(t.inputs[0]).toMatchObject({ required: true, widget: { kind: "image" }, type: { kind: "ref", name: "ImageField" } });
    expect(initialValue(t.inputs[1])).toBe(8);
    expect(initialValue(t.inputs[2])).toBe("gaussian");
  });
  it("a list of models knows its item's fields (a ControlField's limits and choices)", () => {
    const t = nodeTemplate({
      ...blur,
      type: "gen",
      schema: {
        $defs: {
          ControlField: {
            type: "object",
            required: ["control_model"],
            properties: {
              control_model: { type: "string" },
              begin_step_percent: { type: "number", default: 0, minimum: 0, maximum: 1 },
              resize_mode: { type: "string", enum: ["just_resize", "crop_resize"], default: "just_resize" },
            },
          },
        },
        properties: { control: { type: "array", items: { $ref: "#/$defs/ControlField" }, default: [], field_kind: "input", input: "any" } },
      },
    });
    const items = t.inputs[0].itemFields!;
    expect(items.map((f) => f.name)).toEqual(["control_model", "begin_step_percent", "resize_mode"]);
    expect(items[0].required).toBe(true);
    expect(items[1].widget).toMatchObject({ kind: "number", min: 0, max: 1 });
    expect(items[2].widget).toEqual({ kind: "select", options: ["just_resize", "crop_resize"] });
    expect(t.inputs[0].widget).toEqual({ kind: "json" });
  });
  it("the palette groups by category and searches titles, types and tags", () => {
    const add = nodeTemplate({ ...blur, type: "add", title: "Add Integers", description: "Adds two integers", category: "math", tags: ["math"] });
    const all = [nodeTemplate(blur), add];
    expect(groupTemplates(all, "").map(([c]) => c)).toEqual(["images", "math"]);
    expect(groupTemplates(all, "blur")).toEqual([["images", [all[0]]]]);
    expect(groupTemplates(all, "MATH add")).toEqual([["math", [add]]]);
    expect(groupTemplates(all, "nothing")).toEqual([]);
  });
});
