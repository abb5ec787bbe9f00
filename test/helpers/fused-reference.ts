// References for hkvd's fused blend decode (Weft patch 0003), computed outside its graph: the check layer's K deviation
// from a full prefill's K (captured on a private context) and the cached K the sequence's cells hold, and the naive
// blend with some layers' rows replaced by exact ones (what the fused decode at ratio 0 must equal).
import type {LlamaContextSequence, Token} from "node-llama-cpp";
import type {BlendSession} from "../../main/engine/blend/blend.js";
import {ggmlTypeF16, parseSeqStateMemory} from "../../main/engine/kv/kv-blob.js";
import {f16ToF32} from "./f16.js";
import {captureLayerKV, decodeAtPositions, getContextSequenceState, markTokensEvaluated, type PositionedRun, sequenceIdOf} from "../../main/engine/native/native-addon.js";
import {type SplicePartInput, spliceIntoSequence} from "../../main/engine/blend/splice.js";
import type {BuiltPrompt} from "../../main/engine/prompt.js";

export type PromptLayout = {
    /** The first chunk's position: everything before it (BOS, instructions, the first label) is the header. */
    headerEnd: number,
    /** The question's first position. */
    tailStart: number,
    chunks: Array<{start: number, tokens: Token[]}>,
    /** Positions of the labels between chunks (new tokens). */
    labelPositions: number[]
};

/** Where BlendSession.prepare puts each part of the prompt ([header][chunk][label][chunk]...[tail]). */
export function promptLayout(prompt: BuiltPrompt): PromptLayout {
    let offset = 0;
    const placed = prompt.segments.map((segment) => {
        const start = offset;
        offset += segment.tokens.length;
        return {segment, start};
    });
    const chunkEntries = placed.filter(({segment}) => segment.kind === "chunk");
    const headerEnd = chunkEntries[0]?.start ?? 0;
    const last = chunkEntries.at(-1);
    const tailStart = last != null ? last.start + last.segment.tokens.length : 0;
    const labelPositions: number[] = [];
    for (const {segment, start} of placed)
        if (segment.kind !== "chunk" && start >= headerEnd && start < tailStart)
            for (let index = 0; index < segment.tokens.length; index++)
                labelPositions.push(start + index);
    return {headerEnd, tailStart, chunks: chunkEntries.map(({segment, start}) => ({start, tokens: segment.tokens})), labelPositions};
}

/** Layer `layer`'s K rows (f32) of the sequence's cells, by cell position. */
export async function cachedKRows(sequence: LlamaContextSequence, layer: number): Promise<Map<number, Float32Array>> {
    const body = parseSeqStateMemory(await getContextSequenceState(sequence.context, sequenceIdOf(sequence))).body;
    const k = body.layers[layer]!.k;
    if (k.type !== ggmlTypeF16)
        throw new Error("the reference reads f16 K rows only");
    const width = k.rowSize / 2;
    const rows = new Map<number, Float32Array>();
    body.cells.forEach((cell, index) => {
        rows.set(cell.pos, f16ToF32(new Uint16Array(k.rows.buffer, k.rows.byteOffset + index * k.rowSize, width)));
    });
    return rows;
}

/**
 * Per chunk, each token's squared L2 distance between the K a full prefill of the prompt computes at `layer` and the
 * K its cell in `sequence` holds now (the cached chunk K, re-positioned): the quantity the fused decode sorts by.
 */
export async function referenceDeviation(blend: BlendSession, prompt: BuiltPrompt, layer: number): Promise<Array<{start: number, deviation: Float64Array}>> {
    const layout = promptLayout(prompt);
    const cached = await cachedKRows(blend.sequence, layer);
    const prefix = prompt.tokens.slice(0, layout.tailStart);
    const captured = await captureLayerKV(blend.model, prefix, layer, {
        contextSize: Math.max(512, Math.ceil(prefix.length / 512) * 512), threads: blend.threads, flashAttention: blend.flashAttention
    });
    return layout.chunks.map(({start, tokens}) => {
        const deviation = new Float64Array(tokens.length);
        for (let index = 0; index < tokens.length; index++) {
            const row = cached.get(start + index);
            if (row == null)
                throw new Error(`no cell at position ${start + index}`);
            let sum = 0;
            for (let d = 0; d < captured.nEmbdK; d++) {
                const diff = captured.k[(start + index) * captured.nEmbdK + d]! - row[d]!;
                sum += diff * diff;
            }
            deviation[index] = sum;
        }
        return {start, deviation};
    });
}

/** Indices of the `count` largest values (ties by index). */
export function topIndices(values: ArrayLike<number>, count: number): number[] {
    return Array.from({length: values.length}, (_, index) => index).sort((a, b) => values[b]! - values[a]! || a - b).slice(0, count);
}

/**
 * The naive blend with `layers` made exact: the header's and chunks' cached KV spliced as BlendSession.prepare does, those
 * layers' rows of every prefix position replaced by a full prefill's (captured), then the labels and the question
 * (all but its last token) decoded at their positions. Returns the tokens left to evaluate (the question's last).
 */
export async function naiveWithExactLayers(blend: BlendSession, prompt: BuiltPrompt, layers: readonly number[]): Promise<Token[]> {
    const layout = promptLayout(prompt);
    const sequence = blend.sequence;
    const prefix = prompt.tokens.slice(0, layout.tailStart);
    await sequence.clearHistory();
    await sequence.evaluateWithoutGeneratingNewTokens(prompt.tokens.slice(0, layout.headerEnd));
    const header = parseSeqStateMemory(await getContextSequenceState(sequence.context, sequenceIdOf(sequence))).body;
    const parts: SplicePartInput[] = [{body: header, delta: 0}];
    for (const {start, tokens} of layout.chunks)
        parts.push({body: (await blend.chunkKv(tokens)).body, delta: start - 1});
    const overrides = [];
    for (const layer of layers) {
        const captured = await captureLayerKV(blend.model, prefix, layer, {
            contextSize: Math.max(512, Math.ceil(prefix.length / 512) * 512), threads: blend.threads, flashAttention: blend.flashAttention
        });
        overrides.push({layer, k: captured.k, v: captured.v});
    }
    await spliceIntoSequence(sequence, parts, prefix, blend.rope, {threads: blend.threads, nStream: blend.nStream, overrides});

    const tail = prompt.tokens.slice(layout.tailStart);
    const tailInBatch = tail.slice(0, -1);
    const positions = [...layout.labelPositions, ...tailInBatch.map((_, index) => layout.tailStart + index)];
    const runs: PositionedRun[] = [];
    for (let index = 0; index < positions.length;) {
        let end = index + 1;
        while (end < positions.length && positions[end] === positions[end - 1]! + 1)
            end++;
        runs.push({firstPosition: positions[index]!, tokens: Uint32Array.from(prompt.tokens.slice(positions[index]!, positions[end - 1]! + 1))});
        index = end;
    }
    if (runs.length > 0)
        await decodeAtPositions(sequence.context, sequenceIdOf(sequence), [], [runs]);
    markTokensEvaluated(sequence, tailInBatch);
    return tail.slice(tailInBatch.length);
}
