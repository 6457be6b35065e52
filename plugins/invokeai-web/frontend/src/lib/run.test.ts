import { describe, expect, it } from "vitest";
import { outcome, progressText, type Run } from "./run";

function run(items: number, finished: number[], extra: Partial<Run> = {}): Run {
  const ids = Array.from({ length: items }, (_, i) => i + 1);
  return { batchId: "b", itemIds: ids, finished: new Set(finished), failed: 0, canceled: 0, made: 0, step: 0, total: 0, preview: null, ...extra };
}

describe("a run's outcome and progress line", () => {
  it("shows steps while running", () => {
    const r = run(1, [], { step: 5, total: 60 });
    expect(outcome(r)).toBe("running");
    expect(progressText(r)).toBe("0/1 done · step 5/60");
  });
  it("says plainly that a canceled run is canceled, and counts it as not done", () => {
    const r = run(1, [1], { canceled: 1, step: 5, total: 60 });
    expect(outcome(r)).toBe("canceled");
    expect(progressText(r)).toBe("Canceled · 0/1 done · 1 canceled");
  });
  it("names failures before cancellations, and completed runs as completed", () => {
    expect(outcome(run(3, [1, 2, 3], { failed: 1, canceled: 1 }))).toBe("failed");
    expect(progressText(run(3, [1, 2, 3], { failed: 1, canceled: 1 }))).toBe("Failed · 1/3 done · 1 failed · 1 canceled");
    expect(progressText(run(2, [1, 2]))).toBe("Completed · 2/2 done");
  });
});
