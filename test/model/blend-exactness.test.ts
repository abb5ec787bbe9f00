import assert from "node:assert/strict";
import path from "node:path";
import {after, before, describe, it} from "node:test";
import {getLlama, type Llama, type LlamaContext, type LlamaContextSequence, type LlamaModel} from "node-llama-cpp";
import {type BlendContext, type BlendStrategy, openBlendContext, prepareBlend} from "../../main/engine/blend/blend.js";
import {ChunkKvCache} from "../../main/engine/kv/chunk-cache.js";
import {prepareFull, preparePrefix} from "../../main/engine/blend/prepare.js";
import {buildPrompt, type BuiltPrompt} from "../../main/engine/prompt.js";
import {makeTempDir, stories260kPath, testThreads} from "../helpers/paths.js";
import {blendSkipReason, nextLogits, storyQuestion, storySources} from "../helpers/blend-prompt.js";
import {argmax, klDivergence, maxAbsDiff} from "../helpers/logits.js";

const sources = storySources;
const question = storyQuestion;

/**
 * Ratio 1.0 recomputes every reused token in one scattered decode, so its logits differ from a full prefill only
 * by float reductions done in another batch shape: 1.5e-3 was measured for this model (patched-batch.test.ts);
 * logits here span ~30, so 1e-2 leaves room without hiding a wrong position or a stale cell (those move logits by >0.1).
 */
const ratioOneTolerance = 1e-2;


const skip = blendSkipReason();

describe("blend exactness on stories260K (CPU, patched build)", {skip}, () => {
    let temp: Awaited<ReturnType<typeof makeTempDir>>;
    let llama: Llama;
    let model: LlamaModel;
    let context: LlamaContext;
    let sequence: LlamaContextSequence;
    let blend: BlendContext;
    let prompt: BuiltPrompt;
    let vocabSize: number;
    let fullLogits: Float64Array;

    before(async () => {
        temp = await makeTempDir();
        llama = await getLlama({gpu: false, maxThreads: testThreads, build: "never"});
        model = await llama.loadModel({modelPath: stories260kPath});
        context = await model.createContext({contextSize: 1024, threads: testThreads, sequences: 1});
        sequence = context.getSequence();
        vocabSize = model.tokens.bos != null ? model.fileInfo.metadata.tokenizer.ggml.tokens.length : 0;
        const cache = await ChunkKvCache.open({dataDir: path.join(temp.dir, "data"), ramBudgetBytes: 64 * 1024 ** 2, diskBudgetBytes: 64 * 1024 ** 2});
        const opened = await openBlendContext({llama, model, context, sequence, modelPath: stories260kPath, cache, threads: testThreads});
        assert.notEqual(typeof opened, "string", String(opened));
        blend = opened as BlendContext;
        prompt = buildPrompt(model, question, sources, false);
        await prepareFull(sequence, prompt.tokens);
        fullLogits = await nextLogits(sequence, prompt.tokens, vocabSize);
    });

    after(async () => {
        await context?.dispose();
        await model?.dispose();
        await temp?.cleanup();
    });

    async function blendedLogits(strategy: BlendStrategy, ratio: number) {
        const prepared = await prepareBlend(blend, prompt, strategy, ratio);
        assert.equal(prepared.reusedTokens + prepared.recomputedTokens + prepared.freshTokens, prompt.tokens.length);
        return {prepared, logits: await nextLogits(sequence, prepared.tokensToEvaluate, vocabSize)};
    }

    for (const strategy of ["chunk-head", "hkvd"] as const)
        it(`${strategy} at ratio 1.0 gives full prefill's logits`, async (t) => {
            const {prepared, logits} = await blendedLogits(strategy, 1);
            const chunkTokens = prompt.segments.filter((segment) => segment.kind === "chunk").reduce((sum, segment) => sum + segment.tokens.length, 0);
            assert.equal(prepared.recomputedTokens, chunkTokens);
            assert.equal(prepared.reusedTokens, 0);
            const diff = maxAbsDiff(logits, fullLogits);
            t.diagnostic(`max |logit diff| vs full: ${diff.toExponential(2)}, KL ${klDivergence(fullLogits, logits).toExponential(2)}`);
            assert.ok(diff < ratioOneTolerance, `max |diff| ${diff}`);
            assert.equal(argmax(logits), argmax(fullLogits));
        });

    it("naive reuses every chunk token, recomputes none, and stays close to full", async (t) => {
        const {prepared, logits} = await blendedLogits("naive", 0);
        assert.equal(prepared.recomputedTokens, 0);
        assert.ok(prepared.reusedTokens > 0);
        const kl = klDivergence(fullLogits, logits);
        t.diagnostic(`naive KL vs full: ${kl.toExponential(2)}`);
        assert.ok(Number.isFinite(kl) && kl < 1, `KL ${kl}`);
    });

    it("hkvd at 0.15 recomputes 15% of the chunk tokens, chosen by deviation", async (t) => {
        const {prepared} = await blendedLogits("hkvd", 0.15);
        const chunkTokens = prepared.reusedTokens + prepared.recomputedTokens;
        assert.equal(prepared.recomputedTokens, Math.round(0.15 * chunkTokens));
        assert.ok(prepared.selectMs > 0);
        t.diagnostic(`selected ${prepared.recomputedTokens} of ${chunkTokens}`);
    });

    it("prefix reuse gives full prefill's logits", async (t) => {
        // A previous prompt shares everything but the question.
        const other = buildPrompt(model, "Who found a stick?", sources, false);
        await prepareFull(sequence, other.tokens);
        await nextLogits(sequence, other.tokens, vocabSize);
        const prepared = await preparePrefix(sequence, prompt.tokens);
        assert.ok(prepared.reusedTokens > prompt.tokens.length / 2);
        const logits = await nextLogits(sequence, prepared.tokensToEvaluate, vocabSize);
        const diff = maxAbsDiff(logits, fullLogits);
        t.diagnostic(`prefix max |logit diff| vs full: ${diff.toExponential(2)}`);
        assert.ok(diff < ratioOneTolerance);
        assert.equal(argmax(logits), argmax(fullLogits));
    });
});
