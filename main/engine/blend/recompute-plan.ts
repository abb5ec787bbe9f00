// Which prompt positions chunk-head and hkvd recompute: the chunks the question is about whole (focus.ts), a share of
// every other chunk, and nothing of a chunk whose KV is exact as cached (the first source's lead version).
import type {BlendLayout, PlacedChunk} from "./blend-layout.js";
import type {FusedSegment} from "./fused.js";

export type RecomputePlan = {
    /** Starts of the chunks recomputed whole (the focus, less the exact chunk). */
    focusStarts: ReadonlySet<number>,
    /** Starts of the chunks left as cached: their KV is a full prefill's. */
    exactStarts: ReadonlySet<number>,
    /** Every position of the chunks recomputed whole, ascending. */
    focusPositions: number[]
};

export function recomputePlan(layout: BlendLayout, focus: readonly PlacedChunk[], exact: PlacedChunk | null): RecomputePlan {
    const exactStarts = new Set(exact != null ? [exact.start] : []);
    const focusStarts = new Set(focus.map(({start}) => start).filter((start) => !exactStarts.has(start)));
    const focusPositions = layout.chunks.filter(({start}) => focusStarts.has(start))
        .flatMap(({segment, start}) => Array.from({length: segment.tokens.length}, (_, index) => start + index));
    return {focusStarts, exactStarts, focusPositions};
}

/** chunk-head's positions: the focus chunks whole, and the first `ratio` of every other chunk (rounded up; none at 0). */
export function chunkHeadPositions(layout: BlendLayout, plan: RecomputePlan, ratio: number): number[] {
    const selected = [...plan.focusPositions];
    if (Math.round(ratio * layout.chunkTokenCount) <= 0)
        return selected;
    for (const {segment, start} of layout.chunks) {
        if (plan.focusStarts.has(start) || plan.exactStarts.has(start))
            continue;
        for (let index = 0; index < Math.min(segment.tokens.length, Math.ceil(ratio * segment.tokens.length)); index++)
            selected.push(start + index);
    }
    return selected;
}

/**
 * hkvd's fused decode segments: every chunk (selected from) and label (new, forced) between the header and the
 * question, the focus chunks forced whole, the exact chunk left out, then the question's first `tailInBatch` tokens.
 */
export function fusedSegmentsOf(layout: BlendLayout, plan: RecomputePlan, tailInBatch: number): FusedSegment[] {
    const segments = layout.placed
        .filter(({segment, start}) => start >= layout.headerEnd && start < layout.tailStart && segment.tokens.length > 0 && !plan.exactStarts.has(start))
        .map(({segment, start}) => ({start, length: segment.tokens.length, forced: segment.kind !== "chunk" || plan.focusStarts.has(start)}));
    if (tailInBatch > 0)
        segments.push({start: layout.tailStart, length: tailInBatch, forced: true});
    return segments;
}

/**
 * The least share of its ratio every other chunk keeps, however much of the budget the focus takes: a guard for a
 * focus that misses part of what the answer needs. On the answer model's seed-8 questions, one two-hop question was
 * answered wrong with the others at 0 (by chunk-head and hkvd) and right with them at a third of 0.15
 * (bench/RESULTS.md, session 13).
 */
export const otherChunkFloor = 1 / 3;

/**
 * The share of each other chunk (not focus, not exact) recomputed when `ratio` is the share of all chunk tokens a
 * blend recomputes: what the focus chunks leave of that budget, spread over the others, at least
 * {@link otherChunkFloor} of the ratio and at most the ratio.
 */
export function otherChunkShare(layout: BlendLayout, plan: RecomputePlan, ratio: number): number {
    const others = layout.chunks.filter(({start}) => !plan.focusStarts.has(start) && !plan.exactStarts.has(start))
        .reduce((sum, {segment}) => sum + segment.tokens.length, 0);
    if (others === 0)
        return 0;
    const left = (ratio * layout.chunkTokenCount - plan.focusPositions.length) / others;
    return Math.min(ratio, Math.max(otherChunkFloor * ratio, left));
}
