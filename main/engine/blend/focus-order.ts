// The order of a blend's sources: the chunks the question is about first, numbered from 1 as they then stand.
import type {Token} from "node-llama-cpp";
import type {BuiltPrompt} from "../prompt.js";
import {blendLayout} from "./blend-layout.js";
import {type FocusOptions, questionFocus} from "./focus.js";

/**
 * Where to put a prompt's `sourceCount` sources for a blend that recomputes its focus chunks whole (indices of its
 * sources in their new order), or null to keep the prompt's order: the chunks the question is about (questionFocus)
 * first, in prompt order, then the others. A blend reuses the other chunks' KV as computed alone, and a chunk it
 * recomputes after them reads that stale KV: on the answer model, 4 of 30 two-hop answers stayed wrong with both
 * needed chunks recomputed whole, and all 30 were right with those chunks first (bench/RESULTS.md, answer quality,
 * session 11). The caller renumbers the sources in the new order (`renumbered`): a model may cite a source by its
 * place rather than by its label, as the answer model does.
 */
export function focusFirstOrder(prompt: BuiltPrompt, sourceCount: number, focus: FocusOptions, isNameToken?: (token: Token) => boolean): number[] | null {
    const layout = blendLayout(prompt);
    // A source whose text tokenizes to nothing has no chunk segment: its place is unknown.
    if (layout.chunks.length !== sourceCount)
        return null;
    const chosen = new Set(questionFocus(layout.chunks.map(({segment}) => segment), prompt.tokens.slice(layout.tailStart), focus, isNameToken));
    const order = [...layout.chunks.keys()].sort((a, b) => Number(chosen.has(b)) - Number(chosen.has(a)) || a - b);
    return order.every((source, place) => source === place) ? null : order;
}

/**
 * The prompt a blend should get: its sources in `focusFirstOrder`, renumbered, rebuilt by `build`; or the same prompt
 * and sources when the order stands. `order[i]` is where the i-th new source was in `sources` (null: unchanged).
 */
export function inFocusOrder<S extends {n: number}>(prompt: BuiltPrompt, sources: readonly S[], focus: FocusOptions,
    isNameToken: ((token: Token) => boolean) | undefined, build: (sources: S[]) => BuiltPrompt): {prompt: BuiltPrompt, sources: S[], order: number[] | null} {
    const order = focusFirstOrder(prompt, sources.length, focus, isNameToken);
    if (order == null)
        return {prompt, sources: [...sources], order};
    const moved = renumbered(sources, order);
    return {prompt: build(moved), sources: moved, order};
}

/** `items` in `order`, each numbered by its new place: [1], [2], ... */
export function renumbered<T extends {n: number}>(items: readonly T[], order: readonly number[]): T[] {
    return order.map((index, place) => ({...items[index]!, n: place + 1}));
}
