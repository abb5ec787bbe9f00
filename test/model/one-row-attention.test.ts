import assert from "node:assert/strict";
import {after, before, describe, it} from "node:test";
import {getLlama, type Llama, type LlamaModel, type Token} from "node-llama-cpp";
import {ensureTinyLlama, type TinyLlamaShape} from "../fixtures/make-tiny-models.js";
import {nextLogits} from "../helpers/blend-prompt.js";
import {argmax, maxAbsDiff} from "../helpers/logits.js";
import {testThreads} from "../helpers/paths.js";

/**
 * Flash attention's one-row decode (every generated token, and a blend's last question token) against the same token
 * decoded with the one before it (two rows: the tiled kernel). Patch 0013 gives the one-row path its own loop for F16
 * caches: every head's scores per block of cells, each cell's K and V rows read once for all heads, V accumulated in
 * F32 as the tiled kernel does: measured max |diff| 2.2e-6 and 1.9e-6 of logits spanning about -8 to 8 (the upstream
 * loop, accumulating in F16, was 1.4e-2 and 1.7e-2). With the accumulation made to skip each V row's last 8 values, it
 * measured 1.4 and 1.0. (Patch 0011's 8-wide loops, which this test guarded before, now serve the other caches and
 * attention without flash attention.) The two-row side is patch 0014's tiled kernel (K tiles converted and transposed
 * in AVX-512 registers, fully masked tiles skipped on the mask's bits): with two of the transpose's outputs swapped it
 * measured 2.6 and 2.1; with the skip test looking for zeros instead of -inf (fully visible tiles skipped), 2.5 and 2.3.
 */
const tolerance = 1e-3;

/** Two blocks, real Llama-2 tokenizer, f16; the head sizes of Llama 3.2 1B and Qwen2.5 0.5B (64) and Phi-3 (96). */
const shapes: Array<{label: string, shape: TinyLlamaShape}> = [
    {label: "head64", shape: {vocab: "llama-spm", layers: 2, embd: 256, heads: 4, kvHeads: 2, ff: 256, contextLength: 2048, weightType: "f16", seed: 21}},
    {label: "head96", shape: {vocab: "llama-spm", layers: 2, embd: 384, heads: 4, kvHeads: 4, ff: 256, contextLength: 2048, weightType: "f16", seed: 22}}
];

/** Past 512 cells llama.cpp's CPU kernel splits a one-row decode's cells across threads (its split-KV path). */
const promptTokens = 700;

describe("flash attention's one-row decode matches a two-row decode (patches 0013, 0014)", () => {
    let llama: Llama;
    const models = new Map<string, LlamaModel>();

    before(async () => {
        llama = await getLlama({gpu: false, maxThreads: testThreads, build: "never"});
        for (const {label, shape} of shapes)
            models.set(label, await llama.loadModel({modelPath: (await ensureTinyLlama(`one-row-${label}`, shape)).path}));
    });

    after(async () => {
        for (const model of models.values())
            await model.dispose();
    });

    for (const {label, shape} of shapes)
        it(`head size ${shape.embd / shape.heads}`, async (t) => {
            const model = models.get(label)!;
            const context = await model.createContext({contextSize: 1024, threads: testThreads, flashAttention: true});
            try {
                assert.equal(context.flashAttention, true, "the test needs flash attention");
                const sequence = context.getSequence();
                const text = "The river ran past the old mill, and the miller counted his sacks twice before the rain came. ";
                const tokens = model.tokenize(text.repeat(60)).slice(0, promptTokens) as Token[];
                assert.equal(tokens.length, promptTokens);
                const size = model.fileInfo.metadata.tokenizer.ggml.tokens.length;

                await sequence.controlledEvaluate(tokens.slice(0, -1));
                const oneRow = await nextLogits(sequence, tokens.slice(-1), size);
                await sequence.clearHistory();
                await sequence.controlledEvaluate(tokens.slice(0, -2));
                const twoRows = await nextLogits(sequence, tokens.slice(-2), size);

                const diff = maxAbsDiff(oneRow, twoRows);
                t.diagnostic(`max |diff| ${diff.toExponential(2)} over ${size} logits (range ${Math.min(...oneRow).toFixed(1)} to ${Math.max(...oneRow).toFixed(1)})`);
                assert.ok(diff < tolerance, `one-row logits differ from two-row ones by ${diff}`);
                assert.equal(argmax(oneRow), argmax(twoRows));
            } finally {
                await context.dispose();
            }
        });
});
