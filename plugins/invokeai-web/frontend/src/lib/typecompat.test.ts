import { describe, expect, it } from "vitest";
import { areTypesCompatible as fits, schemaToType as T, typeName } from "./typecompat";

const int = { type: "integer" };
const float = { type: "number" };
const str = { type: "string" };
const bool = { type: "boolean" };
const image = { $ref: "#/$defs/ImageField" };
const latents = { $ref: "#/$defs/LatentsField" };
const list = (items: object) => ({ type: "array", items });
const opt = (s: object) => ({ anyOf: [s, { type: "null" }] });

describe("type compatibility (the kernel's rules on JSON-schema types)", () => {
  it("equal types fit", () => {
    for (const s of [int, float, str, bool, image, list(int)]) expect(fits(T(s), T(s))).toBe(true);
  });
  it("Any (no type) fits everything, both ways", () => {
    expect(fits(T({}), T(image))).toBe(true);
    expect(fits(T(image), T({ title: "Item" }))).toBe(true);
    expect(fits(T(list({})), T(list(int)))).toBe(true);
  });
  it("int -> float, never float -> int", () => {
    expect(fits(T(int), T(float))).toBe(true);
    expect(fits(T(float), T(int))).toBe(false);
  });
  it("bool is an int (Python's subclass), and fits float", () => {
    expect(fits(T(bool), T(int))).toBe(true);
    expect(fits(T(bool), T(float))).toBe(true);
    expect(fits(T(int), T(bool))).toBe(false);
  });
  it("different primitives and models refuse", () => {
    expect(fits(T(int), T(str))).toBe(false);
    expect(fits(T(str), T(int))).toBe(false);
    expect(fits(T(int), T(image))).toBe(false);
    expect(fits(T(image), T(str))).toBe(false);
    expect(fits(T(image), T(latents))).toBe(false);
  });
  it("a member fits its union; a union fits only if every member fits", () => {
    expect(fits(T(int), T({ anyOf: [int, str] }))).toBe(true);
    expect(fits(T(int), T(opt(image)))).toBe(false);
    expect(fits(T(image), T(opt(image)))).toBe(true);
    expect(fits(T({ anyOf: [int, str] }), T(str))).toBe(false);
    expect(fits(T({ anyOf: [int, bool] }), T(float))).toBe(true);
    expect(fits(T(opt(image)), T(image))).toBe(false);
  });
  it("a Literal fits the type of its values, and a superset Literal", () => {
    const mode = { enum: ["RGB", "RGBA"], type: "string" };
    expect(fits(T(mode), T(str))).toBe(true);
    expect(fits(T(mode), T(int))).toBe(false);
    expect(fits(T(mode), T({ enum: ["RGB", "RGBA", "L"] }))).toBe(true);
    expect(fits(T({ enum: ["RGB", "X"] }), T({ enum: ["RGB", "RGBA"] }))).toBe(false);
    expect(fits(T(str), T(mode))).toBe(false); // nothing but a Literal fits a Literal
    expect(fits(T({ const: 3 }), T(int))).toBe(true);
  });
  it("containers fit element-wise", () => {
    expect(fits(T(list(int)), T(list(float)))).toBe(true);
    expect(fits(T(list(float)), T(list(int)))).toBe(false);
    expect(fits(T(list(image)), T(list(image)))).toBe(true);
    expect(fits(T(list(int)), T(int))).toBe(false);
    expect(fits(T(int), T(list(int)))).toBe(false);
    expect(fits(T({ type: "object", additionalProperties: int }), T({ type: "object", additionalProperties: float }))).toBe(true);
    expect(fits(T({ type: "object", additionalProperties: float }), T({ type: "object", additionalProperties: int }))).toBe(false);
    const pair = (a: object, b: object) => ({ type: "array", prefixItems: [a, b], maxItems: 2, minItems: 2 });
    expect(fits(T(pair(int, str)), T(pair(float, str)))).toBe(true);
    expect(fits(T(pair(float, str)), T(pair(int, str)))).toBe(false);
    expect(fits(T({ ...list(int), uniqueItems: true }), T(list(int)))).toBe(false); // set is not a list
  });
  it("names types like the kernel", () => {
    expect(typeName(T(opt(image)))).toBe("ImageField | None");
    expect(typeName(T(list(float)))).toBe("list[float]");
    expect(typeName(T({}))).toBe("Any");
    const mode = { enum: ["fast", "slow"], type: "string" };
    expect(typeName(T(mode))).toBe('Literal["fast", "slow"]');
    expect(typeName(T(mode), true)).toBe("choice"); // the editor's label: the widget lists the values
    expect(typeName(T(list(mode)), true)).toBe("list[choice]");
  });
});
