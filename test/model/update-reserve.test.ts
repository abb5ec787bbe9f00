import assert from "node:assert/strict";
import {after, before, describe, it} from "node:test";
import type {Token} from "node-llama-cpp";
import {setUpdateReserve} from "../../main/engine/native/native-addon.js";
import {blendSkipReason, nextLogits, storyQuestion, storySources} from "../helpers/blend-prompt.js";
import {maxAbsDiff} from "../helpers/logits.js";
import {openStoriesContext, type StoriesContext} from "../helpers/stories-context.js";

/**
 * Patch 0009: after a memory update (here the K-shift of the cells an erase moved down), llama.cpp no longer reserves
 * the worst-case graph unless asked; the next decode allocates its own. The decodes after the shift must see the
 * same cache either way: a stale graph or input left from the shift's own graph would move stories260K's logits by
 * far more than float noise (the shifted continuation's logits differ from the prompt's by more than 1e-2).
 */
const tolerance = 1e-4;

const skip = blendSkipReason();

describe("patch 0009: no worst-case graph reserve after a K-shift (stories260K, CPU)", {skip}, () => {
    let stories: StoriesContext;
    let prompt: Token[];
    let continuation: Token[];

    before(async () => {
        stories = await openStoriesContext({batchSize: 64});
        prompt = stories.model.tokenize(storySources.join("\n"));
        continuation = stories.model.tokenize(` ${storyQuestion} ${storySources[0]}`);
    });

    after(async () => {
        await stories?.dispose();
    });

    /** A continuation's logits after an erase in the middle of the prompt shifted the later cells (a K-shift). */
    async function afterShift(reserve: boolean): Promise<{logits: Float64Array, promptLogits: Float64Array}> {
        const {context, sequence, vocabSize} = stories;
        await setUpdateReserve(context, reserve);
        await sequence.clearHistory();
        const promptLogits = await nextLogits(sequence, prompt, vocabSize);
        await sequence.eraseContextTokenRanges([{start: 10, end: 40}]);
        const logits = await nextLogits(sequence, continuation, vocabSize);
        return {logits, promptLogits};
    }

    it("is off by default in the patched build and reports the previous setting", async () => {
        assert.equal(await setUpdateReserve(stories.context, true), false, "a fresh context does not reserve after an update");
        assert.equal(await setUpdateReserve(stories.context, false), true);
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
        await assert.rejects(setUpdateReserve(stories.context, 1 as never), /reserve must be a boolean/);
    });
});
