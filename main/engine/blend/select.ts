// hkvd's selection (CacheBlend): which chunk tokens the blend recomputes.
import type {LlamaModel, Token} from "node-llama-cpp";
import {isTransposed, type KvBody} from "../kv/kv-blob.js";
import type {RopeParams} from "../kv/rope-params.js";
import {captureLayerKV, kvDeviation, type LayerKV} from "../native/native-addon.js";
import type {SelectTrace} from "./prepare.js";
import {spliceRopeOf} from "./splice.js";

/** The early layer hkvd compares at (CacheBlend selects on the first layers' K/V deviation). */
export const selectionLayer = 1;

/** A chunk's cached KV and the prompt position its first cell moves to. */
export type ChunkPlacement = {start: number, body: KvBody};

/**
 * The capture context's size for a prompt: rounded up to a multiple of 512 cells, so questions of nearby lengths share
 * one of the addon's cached capture contexts instead of each creating its own (the results do not depend on the
 * context's size, only on the cells in use).
 */
export function captureContextSize(tokens: number): number {
    return Math.max(512, Math.ceil(tokens / 512) * 512);
}

/** The positions of the `budget` highest scores (`positions[i]` is score i's position); ties keep the earlier one. */
export function topKPositions(scores: ArrayLike<number>, positions: ArrayLike<number>, budget: number): number[] {
    const order = Array.from({length: scores.length}, (_, index) => index).sort((a, b) => scores[b]! - scores[a]! || a - b);
    return order.slice(0, budget).map((index) => positions[index]!);
}

/**
 * CacheBlend's selection: one early layer's K/V for the whole blended prefix under full attention
 * (a private context stopped after that layer), against the chunk-alone K/V now in the cache (K re-positioned
 * like the spliced cache's); the tokens that deviate most are the ones whose cross-chunk attention matters.
 */
export async function selectByKvDeviation(options: {model: LlamaModel, rope: RopeParams, threads: number, flashAttention: boolean},
    tokens: Token[], chunks: readonly ChunkPlacement[], budget: number): Promise<{positions: number[], captured: LayerKV, trace: SelectTrace}> {
    const captureStartedAt = performance.now();
    const captured = await captureLayerKV(options.model, tokens, selectionLayer, {
        contextSize: captureContextSize(tokens.length),
        threads: options.threads,
        flashAttention: options.flashAttention
    });
    const captureMs = performance.now() - captureStartedAt;
    const traceOf = (positions: readonly number[], scoreMs: number) => ({positions, captureMs, captureDecodeMs: captured.decodeMs,
        captureCopyMs: captured.copyMs, captureDecodes: captured.decodes, scoreMs});
    const placed = chunks.filter(({body}) => body.layers[selectionLayer] != null && body.cells.length > 0);
    if (placed.length === 0)
        return {positions: [], captured, trace: traceOf([], 0)};
    const scoreStartedAt = performance.now();

    const first = placed[0]!.body.layers[selectionLayer]!;
    const scores = await kvDeviation({
        capturedK: captured.k,
        capturedV: captured.v,
        nEmbdK: captured.nEmbdK,
        nEmbdV: captured.nEmbdV,
        kType: first.k.type,
        vType: first.v.type,
        vTrans: isTransposed(first.v),
        rope: spliceRopeOf(options.rope),
        threads: options.threads,
        // Cells are in position order (chunkKv checks), so cell c sits at start + c once moved by start - 1.
        chunks: placed.map(({start, body}) => {
            const layer = body.layers[selectionLayer]!;
            return {
                start, cellCount: body.cells.length, delta: start - 1, k: layer.k.rows,
                v: isTransposed(layer.v) ? layer.v.data : layer.v.rows
            };
        })
    });

    const positions = new Int32Array(scores.length);
    let at = 0;
    for (const {start, body} of placed)
        for (let cell = 0; cell < body.cells.length; cell++)
            positions[at++] = start + cell;
    const chosen = topKPositions(scores, positions, budget);
    return {positions: chosen, captured, trace: traceOf(chosen, performance.now() - scoreStartedAt)};
}
