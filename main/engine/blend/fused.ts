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
    /** Each decode's time in llama_weft_blend_decode, in order. */
    decodeMsEach: number[]
};

/** Tokens of a chunk segment the fused decode recomputes: CacheBlend's per-chunk ratio, rounded up (as chunk-head). */
export function fusedKeep(length: number, ratio: number): number {
    return Math.min(length, Math.ceil(ratio * length - 1e-9));
}

/**
 * Runs the fused blend decode over `segments` (ascending, non-overlapping positions of `tokens`) in as few decodes as
 * the batch size allows, each holding whole segments (a chunk longer than a batch is split, each piece selecting its
 * own share). Decodes in order, so a later one attends to what earlier ones recomputed, as one decode would. A
 * decode with nothing to recompute (only chunks, ratio 0) is skipped: its cells keep their cached rows in every layer.
 */
export async function runFusedBlend(sequence: LlamaContextSequence, tokens: readonly Token[], segments: readonly FusedSegment[],
    options: {ratio: number, batchSize: number, checkLayer: number, mask?: FusedBlendSpec["mask"]}): Promise<FusedBlendRun> {
    const pieces: FusedSegment[] = [];
    for (const segment of segments)
        for (let offset = 0; offset < segment.length; offset += options.batchSize)
            pieces.push({start: segment.start + offset, length: Math.min(options.batchSize, segment.length - offset), forced: segment.forced});

    const batches: FusedSegment[][] = [];
    let current: FusedSegment[] = [];
    let currentTokens = 0;
    for (const piece of pieces) {
        if (currentTokens + piece.length > options.batchSize && current.length > 0) {
            batches.push(current);
            current = [];
            currentTokens = 0;
        }
        current.push(piece);
        currentTokens += piece.length;
    }
    if (current.length > 0)
        batches.push(current);

    const selected: number[] = [];
    let decodes = 0;
    let decodeMs = 0;
    const decodeMsEach: number[] = [];
    for (const batch of batches) {
        const keep = batch.map((piece) => piece.forced ? piece.length : fusedKeep(piece.length, options.ratio));
        if (keep.every((count) => count === 0))
            continue;
        const positions = Int32Array.from(batch.flatMap((piece) => Array.from({length: piece.length}, (_, index) => piece.start + index)));
        const result = await fusedBlendDecode(sequence, {
            tokens: Int32Array.from(positions, (position) => tokens[position]!),
            positions,
            segLen: Int32Array.from(batch, (piece) => piece.length),
            segKeep: Int32Array.from(keep),
            checkLayer: options.checkLayer,
            ...(options.mask != null ? {mask: options.mask} : {})
        });
        decodes++;
        decodeMs += result.decodeMs;
        decodeMsEach.push(result.decodeMs);
        let at = 0;
        for (let index = 0; index < batch.length; index++) {
            if (!batch[index]!.forced)
                for (let pick = 0; pick < keep[index]!; pick++)
                    selected.push(positions[result.selected[at + pick]!]!);
            at += keep[index]!;
        }
    }
    return {selected: selected.sort((a, b) => a - b), decodes, decodeMs, decodeMsEach};
}
