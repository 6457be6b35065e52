import { describe, expect, it } from "vitest";
import type { ModelRecord } from "./api";
import { guidanceInputs, modelGroups, modelsOf } from "./models";

const models: ModelRecord[] = [
  { name: "sd", base: "sd-1", type: "main" },
  { name: "old", base: "sd-1" }, // an older server's record: no type, a main model
  { name: "xl", base: "sdxl", type: "main" },
  { name: "ink", base: "sd-1", type: "lora" },
  { name: "ink-xl", base: "sdxl", type: "lora" },
  { name: "canny", base: "sd-1", type: "controlnet" },
  { name: "esrgan", base: "any", type: "upscaler" },
];

describe("installed models by type and base", () => {
  it("main models only for generation; adapters for the chosen base", () => {
    expect(modelsOf(models, "main").map((m) => m.name)).toEqual(["sd", "old", "xl"]);
    expect(modelsOf(models, "lora", "sd-1").map((m) => m.name)).toEqual(["ink"]);
    expect(modelsOf(models, "lora", "sdxl").map((m) => m.name)).toEqual(["ink-xl"]);
    expect(modelsOf(models, "controlnet", "sdxl")).toEqual([]);
    expect(modelsOf(models, "upscaler", "sd-1").map((m) => m.name)).toEqual(["esrgan"]); // base any fits all
    expect(modelsOf(null, "main")).toEqual([]);
  });
  it("groups put whole models first", () => {
    expect(modelGroups(models).map(([t]) => t)).toEqual(["main", "controlnet", "lora", "upscaler"]);
  });
});

describe("the generation node's loras and control", () => {
  const control = { control_model: "canny", image: "a.png", control_weight: 0.8, begin_step_percent: 0.1, end_step_percent: 0.9, resize_mode: "crop_resize" };
  it("are left out when empty (an older server refuses unknown fields)", () => {
    expect(guidanceInputs([], null)).toEqual({});
  });
  it("carry the LoRAs with weights and the ControlField list", () => {
    expect(guidanceInputs([{ name: "ink", weight: -0.5 }], control)).toEqual({
      loras: [{ name: "ink", weight: -0.5 }],
      control: [{ image: { image_name: "a.png" }, control_model: "canny", control_weight: 0.8, begin_step_percent: 0.1, end_step_percent: 0.9, resize_mode: "crop_resize" }],
    });
  });
  it("a ControlNet needs an image and an ordered step range", () => {
    expect(() => guidanceInputs([], { ...control, image: null })).toThrow("Choose a control image for the ControlNet canny");
    expect(() => guidanceInputs([], { ...control, begin_step_percent: 0.95 })).toThrow("begin step percent is after its end");
  });
});
