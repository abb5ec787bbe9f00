import assert from "node:assert/strict";
import {after, before, describe, it} from "node:test";
import {getLlama, type Llama, type LlamaContext, type LlamaModel, type Token} from "node-llama-cpp";
import {decodeAtPositions, decodeBatchSize, limitEvaluationBatch, loadNativeAddon} from "../../main/engine/native/native-addon.js";
import {nextLogits, storySources} from "../helpers/blend-prompt.js";
import {maxAbsDiff} from "../helpers/logits.js";
import {stories260kPath, testThreads} from "../helpers/paths.js";

/**
 * A GPU context keeps a large ubatch for Weft's own decodes (the fused blend's) while node-llama-cpp feeds its prefill
 * in smaller decodes (llama-runtime.ts: evaluationBatchSize, chooseDecodeBatch). Here on stories260K: a context of
 * batch 64 limited to 16 must feed node-llama-cpp's decodes 16 tokens at a time (seen by wrapping the native context's
 * initBatch, as a context of batch 64 feeds 64), evaluate to the same logits as a context of batch 16, and still take a
 * 64-token decode of Weft's.
 */
const addon = loadNativeAddon();

describe("limitEvaluationBatch: node-llama-cpp feeds fewer tokens per decode than the context's ubatch (stories260K, CPU)",
    {skip: addon.available ? false : addon.reason}, () => {
        let llama: Llama;
        let model: LlamaModel;
        let vocabSize: number;
        let prompt: Token[];
        const contexts: LlamaContext[] = [];

        before(async () => {
            llama = await getLlama({gpu: false, maxThreads: testThreads, build: "never"});
            model = await llama.loadModel({modelPath: stories260kPath});
            vocabSize = model.fileInfo.metadata.tokenizer.ggml.tokens.length;
            prompt = model.tokenize([...storySources, ...storySources].join("\n"));
            assert.ok(prompt.length > 64, `the prompt spans several batches (${prompt.length} tokens)`);
        });

        after(async () => {
            for (const context of contexts)
                await context.dispose();
            await model?.dispose();
        });

        /** The token count of every batch node-llama-cpp starts on the context's native object, from now on. */
        function watchBatches(context: LlamaContext): number[] {
            const native = (context as unknown as {_ctx: {initBatch(size: number): void}})._ctx;
            const initBatch = native.initBatch.bind(native);
            const sizes: number[] = [];
            // an own property: the addon's prototype method is read-only
            Object.defineProperty(native, "initBatch", {configurable: true, value: (size: number) => {
                sizes.push(size);
                initBatch(size);
            }});
            return sizes;
        }

        async function open(batchSize: number, evaluate?: number): Promise<LlamaContext> {
            const context = await model.createContext({contextSize: 512, batchSize, threads: testThreads, sequences: 1, flashAttention: true});
            contexts.push(context);
            if (evaluate != null)
                limitEvaluationBatch(context, evaluate);
            return context;
        }

        it("evaluates as a context of the smaller batch does, and reports both sizes", async (t) => {
            const limited = await open(64, 16);
            const small = await open(16);
            const large = await open(64);
            assert.equal(limited.batchSize, 16);
            assert.equal(decodeBatchSize(limited), 64);
            assert.equal(decodeBatchSize(large), 64);

            const batches = [limited, small, large].map(watchBatches);
            const logits = await Promise.all([limited, small, large].map((context) => nextLogits(context.getSequence(), prompt, vocabSize)));
            t.diagnostic(`tokens per decode: limited ${batches[0]!.join(" ")}; batch 64 ${batches[2]!.join(" ")}`);
            assert.equal(Math.max(...batches[0]!), 16);
            assert.deepEqual(batches[0], batches[1]);
            assert.equal(Math.max(...batches[2]!), 64, "without the limit node-llama-cpp fills the context's batch");
            assert.equal(maxAbsDiff(logits[0]!, logits[1]!), 0, "the same ubatches give the same logits");
        });

        it("still takes a decode of Weft's that fills the ubatch, which a context of the smaller batch refuses", async () => {
            const limited = await open(64, 16);
            const small = await open(16);
            const tokens = Uint32Array.from(prompt.slice(0, 64));
            await decodeAtPositions(limited, 0, [], [[{firstPosition: 0, tokens}]]);
            await assert.rejects(decodeAtPositions(small, 0, [], [[{firstPosition: 0, tokens}]]));
        });

        it("never raises the limit above the context's ubatch, and a later call lowers it from the original", async () => {
            const context = await open(32, 64);
            assert.equal(context.batchSize, 32);
            limitEvaluationBatch(context, 8);
            limitEvaluationBatch(context, 24);
            assert.equal(context.batchSize, 24);
            assert.equal(decodeBatchSize(context), 32);
        });
    });
