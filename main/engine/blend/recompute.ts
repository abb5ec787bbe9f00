// chunk-head's recompute (hkvd recomputes inside its fused decode instead): the selected chunk tokens' cached cells are
// removed and decoded again at their positions, with the labels and the question, through every layer.
import type {LlamaContext, Token} from "node-llama-cpp";
import {gpuEvaluationBatchTokens} from "../context-batch.js";
import {decodeAtPositions, decodeBatchSize, type PositionedRun} from "../native/native-addon.js";

/**
 * The most rows one recompute decode carries: what a full prefill is fed per decode on a GPU, so that the rows'
 * attention costs what a prefill's does. One decode of all of chunk-head's 5,324 rows at 32k ran each of them over all
 * 33k cells (bench/GPU.md, session 14).
 */
const recomputePieceTokens = gpuEvaluationBatchTokens;

/** Removes the cells at `cachedPositions` and decodes the tokens at `positions` again, in position order, in few decodes. */
export async function recomputeAt(context: LlamaContext, seqId: number, positions: number[], tokens: readonly Token[],
    cachedPositions: readonly number[]): Promise<void> {
    if (positions.length === 0)
        return;

    const remove = consecutiveRuns([...cachedPositions].sort((a, b) => a - b)).map(({first, length}) => [first, first + length] as const);

    // In position order, at most recomputePieceTokens a decode: each decode's attention then runs over the cells up to
    // its own last position (patch 0012), not over the whole prompt. Equal pieces rather than full ones and a
    // remainder, so that no decode carries a handful of rows: each pays for reading the weights once, whatever its
    // rows. (The CPU's flash attention was once far slower below 64 rows too; patch 0005 gave them the tiled kernel.)
    const pieces = Math.ceil(positions.length / Math.min(decodeBatchSize(context), recomputePieceTokens));
    const pieceSize = Math.ceil(positions.length / pieces);
    const batches: PositionedRun[][] = [];
    for (let start = 0; start < positions.length; start += pieceSize)
        batches.push(consecutiveRuns(positions.slice(start, start + pieceSize)).map(({first, length}) => ({
            firstPosition: first, tokens: Uint32Array.from(tokens.slice(first, first + length))
        })));
    await decodeAtPositions(context, seqId, remove, batches);
}

/** Sorted positions as runs of consecutive ones. */
function consecutiveRuns(sorted: readonly number[]): Array<{first: number, length: number}> {
    const runs: Array<{first: number, length: number}> = [];
    for (let index = 0; index < sorted.length;) {
        let end = index + 1;
        while (end < sorted.length && sorted[end] === sorted[end - 1]! + 1)
            end++;
        runs.push({first: sorted[index]!, length: end - index});
        index = end;
    }
    return runs;
}
