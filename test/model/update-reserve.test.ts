import assert from "node:assert/strict";
import {after, before, describe, it} from "node:test";
import {getLlama, type Llama, type LlamaContext, type LlamaContextSequence, type LlamaModel, type Token} from "node-llama-cpp";
import {setUpdateReserve} from "../../main/engine/native/native-addon.js";
import {blendSkipReason, nextLogits, storyQuestion, storySources} from "../helpers/blend-prompt.js";
import {maxAbsDiff} from "../helpers/logits.js";
import {stories260kPath, testThreads} from "../helpers/paths.js";

/**
 * Patch 0009: after a memory update (here the K-shift of the cells an erase moved down), llama.cpp no longer reserves
 * the worst-case graph unless asked; the next decode allocates its own. The decodes after the shift must see the
 * same cache either way: a stale graph or input left from the shift's own graph would move stories260K's logits by
 * far more than float noise (the shifted continuation's logits differ from the prompt's by more than 1e-2).
 */
const tolerance = 1e-4;

const skip = blendSkipReason();

describe("patch 0009: no worst-case graph reserve after a K-shift (stories260K, CPU)", {skip}, () => {
    let llama: Llama;
    let model: LlamaModel;
    let context: LlamaContext;
    let sequence: LlamaContextSequence;
    let vocabSize: number;
    let prompt: Token[];
    let continuation: Token[];

    before(async () => {
        llama = await getLlama({gpu: false, maxThreads: testThreads, build: "never"});
        model = await llama.loadModel({modelPath: stories260kPath});
        context = await model.createContext({contextSize: 1024, batchSize: 64, threads: testThreads, sequences: 1, flashAttention: true});
        sequence = context.getSequence();
        vocabSize = model.fileInfo.metadata.tokenizer.ggml.tokens.length;
        prompt = model.tokenize(storySources.join("\n"));
        continuation = model.tokenize(` ${storyQuestion} ${storySources[0]}`);
    });

    after(async () => {
        await context?.dispose();
        await model?.dispose();
    });

    /** A continuation's logits after an erase in the middle of the prompt shifted the later cells (a K-shift). */
    async function afterShift(reserve: boolean): Promise<{logits: Float64Array, promptLogits: Float64Array}> {
        await setUpdateReserve(context, reserve);
        await sequence.clearHistory();
        const promptLogits = await nextLogits(sequence, prompt, vocabSize);
        await sequence.eraseContextTokenRanges([{start: 10, end: 40}]);
        const logits = await nextLogits(sequence, continuation, vocabSize);
        return {logits, promptLogits};
    }

    it("is off by default in the patched build and reports the previous setting", async () => {
        assert.equal(await setUpdateReserve(context, true), false, "a fresh context does not reserve after an update");
        assert.equal(await setUpdateReserve(context, false), true);
    });

    it("gives the same logits after a K-shift with and without the reserve", async (t) => {
        const withReserve = await afterShift(true);
        const without = await afterShift(false);
        const again = await afterShift(false);
        const diff = maxAbsDiff(withReserve.logits, without.logits);
        t.diagnostic(`after the shift, reserve vs none, max |logit diff|: ${diff.toExponential(2)}`);
        assert.ok(diff <= tolerance, `logits after the K-shift differ by ${diff}`);
        assert.ok(maxAbsDiff(without.logits, without.promptLogits) > 1e-2, "the continuation's logits depend on the shifted cache");
        assert.ok(maxAbsDiff(again.logits, without.logits) <= tolerance, "a second question after a shift gives the same logits");
    });

    it("refuses a setting that is not a boolean", async () => {
        await assert.rejects(setUpdateReserve(context, 1 as never), /reserve must be a boolean/);
    });
});
