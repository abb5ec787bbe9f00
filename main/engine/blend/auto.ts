import type {RequestedStrategy, Strategy} from "../../contract/index.js";

/**
 * What `auto` (and a question that names no strategy) uses, chosen from `npm run bench -- answers` (bench/RESULTS.md,
 * "Answer quality under reuse", 60 questions per kind): with the answer model of 2026-12-04's fifth session (full F1
 * 98.3 / 95.0 / 98.3 on one-hop / two-hop / cross-chunk) hkvd at 0.15 scores 78.3 / 68.3 / 45.0 and naive 70.0 / 68.3 /
 * 38.3, so the default stays exact prefix reuse until a blend strategy is measured within 2 F1 of full on every kind.
 */
export const autoStrategy: {strategy: Strategy, ratio: number} = {strategy: "prefix", ratio: 0};

/** The concrete strategy and ratio for a request: `auto` or none becomes the measured default with its own ratio. */
export function resolveStrategy(requested: RequestedStrategy | undefined, ratio: number): {strategy: Strategy, ratio: number} {
    return requested == null || requested === "auto" ? autoStrategy : {strategy: requested, ratio};
}
