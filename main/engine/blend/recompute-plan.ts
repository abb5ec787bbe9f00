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
