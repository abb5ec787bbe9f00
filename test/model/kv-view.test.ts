// Weft's llama.cpp patch 0012 (native/patches/0012-kv-view-to-last-visible-cell.diff): a causal one-sequence
// ubatch's KV view ends after the last cell it can see. A decode of early positions among cells that reach much
// further (a blend's recompute rows) then runs over fewer cells; nothing it needs may fall outside. On stories260K
// (real weights, CPU, 1 thread): 300 tokens in the cache (a view of 512 cells), the cells of positions 200-269 and
// 10-59 removed and decoded again in position order, each decode seeing cells only up to its own positions (views of
// 256 cells for the second); then the next token's logits match one evaluation of the same 301 tokens.
import assert from "node:assert/strict";
import {after, before, describe, it} from "node:test";
import {getLlama, LlamaLogLevel, type Llama, type LlamaContext, type LlamaContextSequence, type LlamaModel, type Token} from "node-llama-cpp";
import {decodeAtPositions, sequenceIdOf} from "../../main/engine/native/native-addon.js";
import {stories260kPath, testThreads} from "../helpers/paths.js";
import {blendSkipReason, nextLogits} from "../helpers/blend-prompt.js";
import {maxAbsDiff} from "../helpers/logits.js";

const text = "Once upon a time, there was a little girl named Lily. She loved to play outside in the park with her friends. " +
    "One day, she saw a big red ball under a tree. She ran to get it, but a dog took it first. Lily was sad. Her friend " +
    "Tom saw her and said, \"Let us find the dog together.\" They looked behind the slide, under the bench and near the " +
    "pond. At last they found the dog sleeping next to the ball. Lily laughed and took the ball home. ";
const length = 300;
/** Removed and decoded again, later run first: the first decode sees cells to 269, the second only to 59. */
const runs: ReadonlyArray<readonly [number, number]> = [[200, 270], [10, 60]];
/**
 * The recompute path computes the last token in another batch shape than one evaluation of 301 tokens, which alone
 * moves stories260K's logits (spanning ~30) by ~1.5e-3 on this CPU (patched-batch.test.ts); a cell missing from a view
 * moves them by far more (the control: the holes left unfilled).
 */
const tolerance = 3e-3;

describe("a decode's KV view ends at the last cell it can see (patch 0012, stories260K, CPU)", {skip: blendSkipReason()}, () => {
    let llama: Llama;
    let model: LlamaModel;
    let context: LlamaContext;
    let sequence: LlamaContextSequence;
    let tokens: Token[];
    let vocabSize: number;
    let reference: Float64Array;

    before(async () => {
        llama = await getLlama({gpu: false, maxThreads: testThreads, build: "never", logLevel: LlamaLogLevel.error});
        model = await llama.loadModel({modelPath: stories260kPath});
        context = await model.createContext({contextSize: 1024, threads: testThreads, sequences: 1, flashAttention: true});
        sequence = context.getSequence();
        vocabSize = model.fileInfo.metadata.tokenizer.ggml.tokens.length;
        tokens = [model.tokens.bos!];
        while (tokens.length <= length)
            tokens.push(...model.tokenize(text));
        tokens = tokens.slice(0, length + 1);
        await sequence.clearHistory();
        reference = await nextLogits(sequence, tokens, vocabSize);
    });
    after(async () => {
        await context?.dispose();
        await model?.dispose();
    });

    async function afterRecompute(decodeAgain: boolean): Promise<Float64Array> {
        await sequence.clearHistory();
        await sequence.evaluateWithoutGeneratingNewTokens(tokens.slice(0, length));
        for (const [start, end] of runs)
            await decodeAtPositions(context, sequenceIdOf(sequence), [[start, end]],
                decodeAgain ? [[{firstPosition: start, tokens: Uint32Array.from(tokens.slice(start, end))}]] : []);
        return nextLogits(sequence, [tokens[length]!], vocabSize);
    }

    it("gives the logits of one evaluation of the same tokens", async (t) => {
        const diff = maxAbsDiff(await afterRecompute(true), reference);
        t.diagnostic(`recomputed early positions vs one evaluation: max |logit diff| ${diff.toExponential(2)}`);
        assert.ok(diff < tolerance, `max |diff| ${diff}`);
    });

    it("control: the same holes left unfilled move the logits (the check above can fail)", async (t) => {
        const diff = maxAbsDiff(await afterRecompute(false), reference);
        t.diagnostic(`holes left unfilled: max |logit diff| ${diff.toExponential(2)}`);
        assert.ok(diff > 10 * tolerance, `moved only ${diff}`);
    });
});
