import type {RequestedStrategy, Strategy} from "../../contract/index.js";

/**
 * What `auto` (and a question that names no strategy) uses, chosen from `npm run bench -- answers` (bench/RESULTS.md,
 * "Answer quality under reuse"): on cross-chunk questions naive reuse lost 20 F1 against full and hkvd at 0.15 did not
 * win it back (smoke model, 15 questions a kind), so the default stays exact prefix reuse until a blend strategy is
 * measured within 2 F1 of full on every kind.
 */
export const autoStrategy: {strategy: Strategy, ratio: number} = {strategy: "prefix", ratio: 0};

/** The concrete strategy and ratio for a request: `auto` or none becomes the measured default with its own ratio. */
export function resolveStrategy(requested: RequestedStrategy | undefined, ratio: number): {strategy: Strategy, ratio: number} {
    return requested == null || requested === "auto" ? autoStrategy : {strategy: requested, ratio};
}
