/**
 * Type compatibility between an output field and an input field, on JSON-schema types: the same
 * rules as the kernel (invokeai_core/typecompat.py):
 *
 * equal types; `Any` (no type) on either side; a member of a union into that union (a union output
 * fits only if every member fits); int -> float and bool -> int/float (never float -> int); a
 * Literal (`enum`/`const`) into the type of its values; containers element-wise
 * (`list[int] -> list[float]`).
 *
 * JSON Schema does not carry class inheritance, so "a subclass into its base" is checked by name
 * only: `$ref`s fit when they name the same model. The server validates every graph again.
 */

export type Literal = string | number | boolean | null;

export type TypeDesc =
  | { kind: "any" }
  | { kind: "prim"; name: "integer" | "number" | "string" | "boolean" | "null" }
  | { kind: "ref"; name: string }
  | { kind: "literal"; values: Literal[] }
  | { kind: "array"; items: TypeDesc; tuple?: TypeDesc[]; set?: boolean }
  | { kind: "object"; values: TypeDesc }
  | { kind: "union"; members: TypeDesc[] };

export const ANY: TypeDesc = { kind: "any" };

// A JSON schema fragment (loosely typed: it comes from the server).
export type JsonSchema = { [key: string]: unknown };

const PRIMS = new Set(["integer", "number", "string", "boolean", "null"]);

/** The type a JSON schema describes. `$ref`s are kept as names (not resolved). */
export function schemaToType(schema: JsonSchema | undefined | null | boolean): TypeDesc {
  if (!schema || schema === true || typeof schema !== "object") return ANY;
  if (typeof schema.$ref === "string") return { kind: "ref", name: refName(schema.$ref) };
  if (Array.isArray(schema.allOf) && schema.allOf.length === 1) return schemaToType(schema.allOf[0] as JsonSchema);
  if ("const" in schema) return { kind: "literal", values: [schema.const as Literal] };
  if (Array.isArray(schema.enum)) return { kind: "literal", values: schema.enum as Literal[] };
  const alts = (schema.anyOf ?? schema.oneOf) as JsonSchema[] | undefined;
  if (Array.isArray(alts)) return union(alts.map(schemaToType));
  const t = schema.type;
  if (Array.isArray(t)) return union(t.map((x) => schemaToType({ ...schema, type: x })));
  if (typeof t !== "string") return ANY;
  if (PRIMS.has(t)) return { kind: "prim", name: t as "integer" };
  if (t === "array") {
    if (Array.isArray(schema.prefixItems)) {
      const tuple = (schema.prefixItems as JsonSchema[]).map(schemaToType);
      const rest = schema.items === undefined || schema.items === false ? undefined : schemaToType(schema.items as JsonSchema);
      return rest ? { kind: "array", items: union([...tuple, rest]) } : { kind: "array", items: union(tuple), tuple };
    }
    return { kind: "array", items: schemaToType(schema.items as JsonSchema), set: schema.uniqueItems === true };
  }
  if (t === "object") {
    const ap = schema.additionalProperties;
    return { kind: "object", values: ap && typeof ap === "object" ? schemaToType(ap as JsonSchema) : ANY };
  }
  return ANY;
}

export function refName(ref: string): string {
  return ref.slice(ref.lastIndexOf("/") + 1);
}

function union(members: TypeDesc[]): TypeDesc {
  const flat: TypeDesc[] = [];
  for (const m of members) {
    if (m.kind === "any") return ANY;
    for (const x of m.kind === "union" ? m.members : [m]) if (!flat.some((y) => equalTypes(x, y))) flat.push(x);
  }
  return flat.length === 1 ? flat[0] : { kind: "union", members: flat };
}

export function equalTypes(a: TypeDesc, b: TypeDesc): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

/** Python's isinstance(value, T) for a JSON value and a primitive type name. */
function literalFits(value: Literal, prim: string): boolean {
  switch (prim) {
    case "string":
      return typeof value === "string";
    case "boolean":
      return typeof value === "boolean";
    case "integer": // bool is a subclass of int in Python
      return typeof value === "boolean" || (typeof value === "number" && Number.isInteger(value));
    case "number":
      return typeof value === "number" && !Number.isInteger(value);
    case "null":
      return value === null;
  }
  return false;
}

/** Whether a value of type `src` (an output) may feed an input of type `dst`. */
export function areTypesCompatible(src: TypeDesc, dst: TypeDesc): boolean {
  if (src.kind === "any" || dst.kind === "any" || equalTypes(src, dst)) return true;
  if (src.kind === "union") return src.members.every((m) => areTypesCompatible(m, dst));
  if (dst.kind === "union") return dst.members.some((m) => areTypesCompatible(src, m));
  if (src.kind === "literal") {
    if (dst.kind === "literal") return src.values.every((v) => dst.values.some((w) => w === v));
    return dst.kind === "prim" && src.values.every((v) => literalFits(v, dst.name));
  }
  if (dst.kind === "literal") return false;
  if (src.kind === "prim" && dst.kind === "prim") {
    if (src.name === "integer" && dst.name === "number") return true;
    if (src.name === "boolean" && (dst.name === "number" || dst.name === "integer")) return true;
    return false;
  }
  if (src.kind === "array" && dst.kind === "array") {
    if (dst.tuple && src.tuple) {
      return src.tuple.length === dst.tuple.length && src.tuple.every((s, i) => areTypesCompatible(s, dst.tuple![i]));
    }
    if (dst.tuple && !src.tuple) return dst.tuple.length === 0 ? false : src.items.kind === "any";
    if (!src.tuple && !dst.tuple && src.set !== dst.set) return false; // set and list are unrelated classes
    return areTypesCompatible(src.items, dst.items);
  }
  if (src.kind === "object" && dst.kind === "object") return areTypesCompatible(src.values, dst.values);
  // refs: equal names were handled above; JSON Schema has no inheritance to check further
  return false;
}

/** A short readable name, like the kernel's `type_name`. With `brief` (the editor's field labels),
 * a Literal reads "choice" instead of listing its values, which its widget shows. */
export function typeName(t: TypeDesc, brief = false): string {
  const name = (x: TypeDesc) => typeName(x, brief);
  switch (t.kind) {
    case "any":
      return "Any";
    case "prim":
      return { integer: "int", number: "float", string: "str", boolean: "bool", null: "None" }[t.name];
    case "ref":
      return t.name;
    case "literal":
      return brief ? "choice" : `Literal[${t.values.map((v) => JSON.stringify(v)).join(", ")}]`;
    case "array":
      return t.tuple ? `tuple[${t.tuple.map(name).join(", ")}]` : `${t.set ? "set" : "list"}[${name(t.items)}]`;
    case "object":
      return `dict[str, ${name(t.values)}]`;
    case "union":
      return t.members.map(name).join(" | ");
  }
}
