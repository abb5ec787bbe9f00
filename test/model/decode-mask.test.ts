import assert from "node:assert/strict";
import {after, before, describe, it} from "node:test";
import type {Token} from "node-llama-cpp";
import {setDecodeMaskMode} from "../../main/engine/native/native-addon.js";
import {blendSkipReason, nextLogits, storyQuestion, storySources} from "../helpers/blend-prompt.js";
import {maxAbsDiff} from "../helpers/logits.js";
import {openStoriesContext, type StoriesContext} from "../helpers/stories-context.js";

/**
 * Patch 0008 builds an ordinary decode's causal mask in the graph from the cells' and the tokens' positions (by
 * default only where the KV cache is on a GPU; "graph" forces it here). Both masks hold the same values and flash
 * attention reads the same F16 mask, so the logits match to float noise (measured 0 here); a wrong row, a future
 * cell left open or an erased cell left visible moves stories260K's logits by more than 1e-2 (see fused-blend.test).
 */
const tolerance = 1e-4;

const skip = blendSkipReason();

describe("patch 0008: an ordinary decode's causal mask built in the graph (stories260K, CPU, flash attention)", {skip}, () => {
    let stories: StoriesContext;
    let prompt: Token[];
    let continuation: Token[];

    before(async () => {
        // Batch 32: the prompt runs as several ubatches, each attending to the cells of the ones before it.
        stories = await openStoriesContext({batchSize: 32});
        prompt = stories.model.tokenize([...storySources, ...storySources].join("\n"));
        continuation = stories.model.tokenize(` ${storyQuestion} ${storySources[0]}`);
        assert.ok(prompt.length > 2 * 32, `the prompt must span several ubatches (${prompt.length} tokens)`);
    });

    after(async () => {
        await stories?.dispose();
    });

    /** The prompt's next-token logits, then, after erasing a middle range (later cells shift down), a continuation's. */
    async function run(mode: "host" | "graph"): Promise<{prompt: Float64Array, afterErase: Float64Array}> {
        const {context, sequence, vocabSize} = stories;
        assert.equal(await setDecodeMaskMode(context, mode), true, "the build has patch 0008");
        await sequence.clearHistory();
        const promptLogits = await nextLogits(sequence, prompt, vocabSize);
        await sequence.eraseContextTokenRanges([{start: 20, end: 52}]);
        assert.equal(sequence.nextTokenIndex, prompt.length - 32);
        const afterErase = await nextLogits(sequence, continuation, vocabSize);
        return {prompt: promptLogits, afterErase};
    }

    it("gives the host fill's logits over several ubatches and after cells were erased and shifted", async (t) => {
        const host = await run("host");
        const graph = await run("graph");
        const host2 = await run("host");
        const promptDiff = maxAbsDiff(host.prompt, graph.prompt);
        const eraseDiff = maxAbsDiff(host.afterErase, graph.afterErase);
        t.diagnostic(`graph vs host mask, max |logit diff|: prompt ${promptDiff.toExponential(2)}, after the erase ${eraseDiff.toExponential(2)}`);
        assert.ok(promptDiff <= tolerance, `prompt logits differ by ${promptDiff}`);
        assert.ok(eraseDiff <= tolerance, `logits after the erase differ by ${eraseDiff}`);
        // The comparison is meaningful: the continuation's logits depend on what the erase removed.
        assert.ok(maxAbsDiff(host.afterErase, host.prompt) > 1e-2);
        assert.deepEqual(host2, host, "switching modes back gives the host fill's logits again");
        await setDecodeMaskMode(stories.context, "auto");
    });

    it("refuses an unknown mode with a clear error", async () => {
        await assert.rejects(setDecodeMaskMode(stories.context, "gpu" as never), /mode must be "auto", "host" or "graph"/);
    });
});
