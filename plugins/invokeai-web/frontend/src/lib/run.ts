/** A generation run on the Generate screen: a batch of queue items, and how it stands. */

export interface Run {
  batchId: string;
  itemIds: number[];
  finished: Set<number>;
  failed: number;
  canceled: number;
  made: number; // images this run produced
  step: number;
  total: number;
  preview: string | null;
}

export type Outcome = "running" | "completed" | "canceled" | "failed";

/** How a run stands: running until every item finished, then failed, canceled or completed. */
export function outcome(run: Run): Outcome {
  if (run.finished.size < run.itemIds.length) return "running";
  return run.failed ? "failed" : run.canceled ? "canceled" : "completed";
}

/** The progress line: "1/4 done · step 3/8 · 2 canceled", prefixed with the outcome once finished. */
export function progressText(run: Run): string {
  const state = outcome(run);
  const done = run.finished.size - run.failed - run.canceled;
  const parts = [`${done}/${run.itemIds.length} done`];
  if (state === "running" && run.total) parts.push(`step ${run.step}/${run.total}`);
  if (run.failed) parts.push(`${run.failed} failed`);
  if (run.canceled) parts.push(`${run.canceled} canceled`);
  const label = { running: "", completed: "Completed", canceled: "Canceled", failed: "Failed" }[state];
  return [label, ...parts].filter(Boolean).join(" · ");
}
