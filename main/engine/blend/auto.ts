import type {RequestedStrategy, Strategy} from "../../contract/index.js";

/**
 * What `auto` (and a question that names no strategy) uses, chosen from `npm run bench -- answers` (bench/RESULTS.md,
 * "Answer quality under reuse"): the answer model retrained in one H200 call answers only at the rate of a guess among
 * the prompt's entities of the answer's type (full F1 40 / 75 / 27.5 on one-hop / two-hop / cross-chunk, 20 questions
 * each), so no blend strategy has been measured at full quality on a model that can answer; the default stays exact
 * prefix reuse until one is measured within 2 F1 of full on every kind.
 */
export const autoStrategy: {strategy: Strategy, ratio: number} = {strategy: "prefix", ratio: 0};

/** The concrete strategy and ratio for a request: `auto` or none becomes the measured default with its own ratio. */
export function resolveStrategy(requested: RequestedStrategy | undefined, ratio: number): {strategy: Strategy, ratio: number} {
    return requested == null || requested === "auto" ? autoStrategy : {strategy: requested, ratio};
}
