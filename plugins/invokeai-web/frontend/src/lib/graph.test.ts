import { describe, expect, it } from "vitest";
import { connectionProblem, fromGraph, newNodeId, toGraph, type EditorNode } from "./graph";
import { nodeTemplate, type NodeInfo } from "./schema";

const img = { $ref: "#/$defs/ImageField" };
function info(type: string, inputs: Record<string, object>, outputs: Record<string, object>): NodeInfo {
  const fi = (p: object) => ({ field_kind: "input", input: "any", ...p });
  return {
    type, title: type, description: "", category: "x", tags: [], version: "1.0.0", plugin: "p", output_type: "o",
    schema: {
      properties: Object.fromEntries(Object.entries(inputs).map(([k, v]) => [k, fi(v)])),
      output: { properties: Object.fromEntries(Object.entries(outputs).map(([k, v]) => [k, { field_kind: "output", ...v }])) },
    },
  };
}
const T = new Map(
  [
    info("blank_image", { width: { type: "integer", default: 512 } }, { image: img, width: { type: "integer" } }),
    info("img_blur", { image: img, radius: { type: "number", default: 8 } }, { image: img }),
    info("collect", { item: { input: "connection" } }, { collection: { type: "array", items: {} } }),
  ].map((i) => [i.type, nodeTemplate(i)]),
);
const n = (id: string, type: string): EditorNode => ({ id, type, values: {}, position: { x: 0, y: 0 } });
const nodes = [n("a", "blank_image"), n("b", "img_blur"), n("c", "img_blur"), n("k", "collect")];
const e = (source: string, sourceHandle: string, target: string, targetHandle: string) => ({ source, sourceHandle, target, targetHandle });

describe("connections in the editor", () => {
  it("accepts compatible ports", () => {
    expect(connectionProblem(e("a", "image", "b", "image"), nodes, [], T)).toBeNull();
    expect(connectionProblem(e("a", "width", "b", "radius"), nodes, [], T)).toBeNull(); // int -> float
  });
  it("refuses incompatible types, naming them", () => {
    expect(connectionProblem(e("a", "width", "b", "image"), nodes, [], T)).toMatch(/int .* does not fit ImageField/);
  });
  it("refuses a second edge into one input, except collect.item", () => {
    const edges = [e("a", "image", "b", "image")];
    expect(connectionProblem(e("c", "image", "b", "image"), nodes, edges, T)).toMatch(/already connected/);
    const ks = [e("a", "image", "k", "item")];
    expect(connectionProblem(e("b", "image", "k", "item"), nodes, ks, T)).toBeNull();
  });
  it("refuses cycles and self-links", () => {
    const edges = [e("b", "image", "c", "image")];
    expect(connectionProblem(e("c", "image", "b", "image"), nodes, edges, T)).toMatch(/cycle/);
    expect(connectionProblem(e("b", "image", "b", "image"), nodes, [], T)).toMatch(/itself/);
  });
});

describe("graph JSON", () => {
  it("round-trips, leaving out connected inputs' values", () => {
    const ns = [{ ...n("a", "blank_image"), values: { width: 64 } }, { ...n("b", "img_blur"), values: { radius: 2, image: "" } }];
    const g = toGraph(ns, [e("a", "image", "b", "image")], T);
    expect(g).toEqual({
      nodes: { a: { id: "a", type: "blank_image", width: 64 }, b: { id: "b", type: "img_blur", radius: 2 } },
      edges: [{ source: { node_id: "a", field: "image" }, destination: { node_id: "b", field: "image" } }],
    });
    const back = fromGraph(g);
    expect(back.edges).toEqual([e("a", "image", "b", "image")]);
    expect(back.nodes.map((x) => [x.id, x.values])).toEqual([["a", { width: 64 }], ["b", { radius: 2 }]]);
    expect(back.nodes[1].position.x).toBeGreaterThan(back.nodes[0].position.x); // laid out in layers
  });
  it("makes fresh node ids", () => {
    expect(newNodeId("add", ["add_1", "add_2"])).toBe("add_3");
  });
});
