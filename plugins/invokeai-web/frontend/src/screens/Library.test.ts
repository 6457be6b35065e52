import { describe, expect, it } from "vitest";
import { inputsText, inputValue, parseInputs } from "./Library";

describe("exposed inputs text", () => {
  it("parses name = node.field lines with descriptions, and writes them back", () => {
    const inputs = parseInputs("steps = denoise.steps  # how many\n\nseed=noise.seed\n");
    expect(inputs).toEqual([
      { name: "steps", node_id: "denoise", field: "steps", description: "how many" },
      { name: "seed", node_id: "noise", field: "seed" },
    ]);
    expect(parseInputs(inputsText(inputs))).toEqual(inputs);
  });
  it("names a line it cannot read", () => {
    expect(() => parseInputs("steps denoise")).toThrow('"steps denoise": write an exposed input as name = node_id.field');
  });
  it("reads values as JSON when they parse, else as text", () => {
    expect(inputValue("30")).toBe(30);
    expect(inputValue("[1, 2]")).toEqual([1, 2]);
    expect(inputValue("a cat")).toBe("a cat");
  });
});
