// One CPU context on stories260K with flash attention, as the patched-decode tests (decode-mask, update-reserve) open it.
import {getLlama, type LlamaContext, type LlamaContextSequence, type LlamaModel} from "node-llama-cpp";
import {stories260kPath, testThreads} from "./paths.js";

export type StoriesContext = {model: LlamaModel, context: LlamaContext, sequence: LlamaContextSequence, vocabSize: number, dispose(): Promise<void>};

export async function openStoriesContext(options: {batchSize: number, contextSize?: number}): Promise<StoriesContext> {
    const llama = await getLlama({gpu: false, maxThreads: testThreads, build: "never"});
    const model = await llama.loadModel({modelPath: stories260kPath});
    const context = await model.createContext({
        contextSize: options.contextSize ?? 1024, batchSize: options.batchSize, threads: testThreads, sequences: 1, flashAttention: true
    });
    return {
        model, context, sequence: context.getSequence(), vocabSize: model.fileInfo.metadata.tokenizer.ggml.tokens.length,
        async dispose() {
            await context.dispose();
            await model.dispose();
        }
    };
}
