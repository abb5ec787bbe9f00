import type {LlamaContextSequence, Token} from "node-llama-cpp";
import {fusedBlendDecode, type FusedBlendSpec, fusedBlendSupported} from "../native/native-addon.js";

/** Architectures whose llama.cpp graph carries Weft patch 0003's blend hook. */
const fusedArchitectures = new Set(["llama", "qwen2", "qwen3", "phi3"]);

/**
 * Why hkvd's fused blend decode (Weft patch 0003) cannot run for this model and context, or null when it can. The
 * fused decode scatters V rows like K rows, which needs the untransposed V cache of flash attention.
 */
export function fusedBlendUnavailable(options: {flashAttention: boolean, architecture: string}): string | null {
    if (!fusedBlendSupported())
        return "the loaded llama.cpp lacks Weft's patch 0003 (fused blend decode)";
    if (!options.flashAttention)
        return "flash attention is off, and the fused blend decode needs it";
    if (!fusedArchitectures.has(options.architecture))
        return `the ${options.architecture} architecture has no fused-blend hook (${[...fusedArchitectures].join(", ")} have one)`;
    return null;
}

/** A run of prompt positions the fused decode covers: a cached chunk (selected from) or new tokens (recomputed in full). */
export type FusedSegment = {start: number, length: number, forced: boolean};

export type FusedBlendRun = {
    /** Positions of the chunk tokens the decode recomputed through every layer (forced segments not included), ascending. */
    selected: number[],
    decodes: number,
    decodeMs: number,
    /**
     * Each decode's host time in llama_weft_blend_decode, in order: queueing it (the device's work overlaps the next
     * one's queueing; decodeMs includes the final wait), or with options.phases the whole decode.
     */
    decodeMsEach: number[],
    /** With options.phases: each decode's host phases (native-addon.ts fusedBlendPhases), in order. */
    phaseMsEach?: number[][]
};

/**
 * The fewest tokens of a chunk that hkvd recomputes at any ratio above 0 (the whole chunk when it is shorter). A short
 * chunk's share alone (15 % of a 35-token paragraph is 6 tokens) left the chunk unrepaired where it refers to the
 * one before it: on the answer model's held-out questions (6 sources of ~70 tokens), hkvd 0.15 scored 50.0 F1 on
 * cross-chunk questions, as naive does (full: 61.7); with at least 8 tokens a chunk 50.0, 12 58.3, 16 and 24 58.3
 * (bench/RESULTS.md, answer quality, floor). Chunks of Weft's usual 512 tokens recompute 77 at 0.15 anyway.
 */
export const minRecomputedPerChunk = 12;

/**
 * Tokens of a chunk segment the fused decode recomputes: CacheBlend's per-chunk ratio, rounded up (as chunk-head),
 * and at least {@link minRecomputedPerChunk} when the ratio is above 0 (ratio 0 recomputes none: the selection's share).
 */
export function fusedKeep(length: number, ratio: number): number {
    if (!(ratio > 0))
        return 0;
    return Math.min(length, Math.max(minRecomputedPerChunk, Math.ceil(ratio * length - 1e-9)));
}

/**
 * Whole pieces (each at most `batchSize` tokens), in order, into as few decodes as filling each up to `batchSize`
 * needs, with the smallest decode as large as that count allows. Filling greedily leaves the last decode whatever
 * remains, often just the question's few dozen tokens, and llama.cpp's CPU flash attention takes a much slower
 * row-by-row path below 64 query rows; on a GPU every extra decode is another pass over the weights, so the count
 * never grows. A search over the smallest decode's size, each step a small dynamic program over the pieces.
 */
export function packFusedBatches(pieces: readonly FusedSegment[], batchSize: number): FusedSegment[][] {
    const n = pieces.length;
    const prefix = [0];
    for (const piece of pieces)
        prefix.push(prefix.at(-1)! + piece.length);
    let count = 0;
    for (let used = batchSize + 1, index = 0; index < n; index++) {
        if (used + pieces[index]!.length > batchSize) {
            count++;
            used = 0;
        }
        used += pieces[index]!.length;
    }
    if (count <= 1)
        return count === 0 ? [] : [[...pieces]];

    // from[i][c]: where the c-th decode ending before piece i starts, -1 if the first i pieces cannot make c decodes
    // of between `least` and batchSize tokens each
    const cut = (least: number): number[][] | null => {
        const from = Array.from({length: n + 1}, () => new Array<number>(count + 1).fill(-1));
        from[0]![0] = 0;
        for (let end = 1; end <= n; end++)
            for (let begin = end - 1; begin >= 0 && prefix[end]! - prefix[begin]! <= batchSize; begin--) {
                if (prefix[end]! - prefix[begin]! < least)
                    continue;
                for (let c = 1; c <= count; c++)
                    if (from[end]![c] === -1 && from[begin]![c - 1] !== -1)
                        from[end]![c] = begin;
            }
        return from[n]![count] === -1 ? null : from;
    };
    let low = 0, high = batchSize, best = cut(0)!;
    while (low < high) {
        const mid = Math.ceil((low + high) / 2);
        const found = cut(mid);
        if (found == null)
            high = mid - 1;
        else {
            low = mid;
            best = found;
        }
    }
    const batches: FusedSegment[][] = [];
    for (let end = n, c = count; c > 0; c--) {
        const begin = best[end]![c]!;
        batches.unshift(pieces.slice(begin, end));
        end = begin;
    }
    return batches;
}

/**
 * Runs the fused blend decode over `segments` (ascending, non-overlapping positions of `tokens`) in as few decodes as
 * the batch size allows, all in one native job (each queued while the device computes the one before), each holding
 * whole segments (a chunk longer than a batch is split, each piece selecting its own share). Decodes in order, so a
 * later one attends to what earlier ones recomputed, as one decode would. A decode with nothing to recompute (only
 * chunks, ratio 0) is skipped: its cells keep their cached rows in every layer.
 */
export async function runFusedBlend(sequence: LlamaContextSequence, tokens: readonly Token[], segments: readonly FusedSegment[],
    options: {ratio: number, batchSize: number, checkLayer: number, mask?: FusedBlendSpec["mask"], phases?: boolean}): Promise<FusedBlendRun> {
    const pieces: FusedSegment[] = [];
    for (const segment of segments)
        for (let offset = 0; offset < segment.length; offset += options.batchSize)
            pieces.push({start: segment.start + offset, length: Math.min(options.batchSize, segment.length - offset), forced: segment.forced});

    const batches = packFusedBatches(pieces, options.batchSize);

    const runs = batches.map((batch) => ({batch, keep: batch.map((piece) => piece.forced ? piece.length : fusedKeep(piece.length, options.ratio))}))
        .filter(({keep}) => keep.some((count) => count > 0));
    if (runs.length === 0)
        return {selected: [], decodes: 0, decodeMs: 0, decodeMsEach: [], ...(options.phases === true ? {phaseMsEach: []} : {})};
    const positionsOf = runs.map(({batch}) =>
        Int32Array.from(batch.flatMap((piece) => Array.from({length: piece.length}, (_, index) => piece.start + index))));
    const result = await fusedBlendDecode(sequence, {
        batches: runs.map(({batch, keep}, index) => ({
            tokens: Int32Array.from(positionsOf[index]!, (position) => tokens[position]!),
            positions: positionsOf[index]!,
            segLen: Int32Array.from(batch, (piece) => piece.length),
            segKeep: Int32Array.from(keep)
        })),
        checkLayer: options.checkLayer,
        ...(options.mask != null ? {mask: options.mask} : {}),
        ...(options.phases === true ? {phases: true} : {})
    });
    const selected: number[] = [];
    runs.forEach(({batch, keep}, run) => {
        let at = 0;
        for (let index = 0; index < batch.length; index++) {
            if (!batch[index]!.forced)
                for (let pick = 0; pick < keep[index]!; pick++)
                    selected.push(positionsOf[run]![result.selected[run]![at + pick]!]!);
            at += keep[index]!;
        }
    });
    const decodes = runs.length, decodeMs = result.decodeMs, decodeMsEach = Array.from(result.hostMsEach);
    const phaseMsEach = result.phaseMs?.map((phases) => Array.from(phases)) ?? [];
    return {selected: selected.sort((a, b) => a - b), decodes, decodeMs, decodeMsEach, ...(options.phases === true ? {phaseMsEach} : {})};
}
