import type {RequestedStrategy, Strategy} from "../../contract/index.js";

/**
 * What `auto` (and a question that names no strategy) uses, chosen from `npm run bench -- answers` (bench/RESULTS.md,
 * "Answer quality under reuse", session 10, 30 held-out questions per kind): with the answer model (full F1 96.7 /
 * 100 / 100 on one-hop / two-hop / cross-chunk) hkvd at 0.15 with its focus chunks (focus.ts) scores 93.3 / 86.7 / 100
 * and naive 73.3 / 76.7 / 43.3, so the default stays exact prefix reuse until a blend strategy is measured within 2 F1
 * of full on every kind.
 */
export const autoStrategy: {strategy: Strategy, ratio: number} = {strategy: "prefix", ratio: 0};

/** The concrete strategy and ratio for a request: `auto` or none becomes the measured default with its own ratio. */
export function resolveStrategy(requested: RequestedStrategy | undefined, ratio: number): {strategy: Strategy, ratio: number} {
    return requested == null || requested === "auto" ? autoStrategy : {strategy: requested, ratio};
}
