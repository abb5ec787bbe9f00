import type {RequestedStrategy, Strategy} from "../../contract/index.js";

/**
 * What `auto` (and a question that names no strategy) uses, chosen from `npm run bench -- answers` (bench/RESULTS.md,
 * "Answer quality under reuse", session 11, 30 held-out questions per kind): with the answer model, full prefill
 * scores F1 96.7 / 100 / 100 on one-hop / two-hop / cross-chunk, and so do `chunk-head` and `hkvd` at 0.15 once the
 * sources the question is about are recomputed whole and go first (focus.ts, focus-order.ts), while `naive` scores
 * 73.3 / 76.7 / 43.3. Of the two, `chunk-head` costs less (no selection pass: 0.33 of a full prefill against hkvd's 0.38
 * on an H200 at 8k tokens with one focus chunk, bench/GPU.md session 10) and runs without flash attention.
 */
export const autoStrategy: {strategy: Strategy, ratio: number} = {strategy: "chunk-head", ratio: 0.15};

/** The concrete strategy and ratio for a request: `auto` or none becomes the measured default with its own ratio. */
export function resolveStrategy(requested: RequestedStrategy | undefined, ratio: number): {strategy: Strategy, ratio: number} {
    return requested == null || requested === "auto" ? autoStrategy : {strategy: requested, ratio};
}
