import {createHash} from "node:crypto";
import type {Llama, LlamaEmbeddingContext, LlamaModel} from "node-llama-cpp";
import type {ModelInfo} from "../../contract/index.js";

export type Embedder = {
    /** Names the vectors table: vectors from another model (or another file) never mix with these. */
    key: string;
    modelId: string;
    dimensions: number;
    embed(texts: readonly string[]): Promise<Float32Array[]>;
    dispose(): Promise<void>;
};

export function embedderKey(info: ModelInfo): string {
    return createHash("sha256").update(`${info.path}\0${info.sizeBytes}\0${info.name}`).digest("hex").slice(0, 16);
}

/** A GGUF model's embedding context (node-llama-cpp); a chunk longer than its context is cut to fit. */
export async function openEmbedder(llama: Llama, info: ModelInfo, threads: number): Promise<Embedder> {
    const model: LlamaModel = await llama.loadModel({modelPath: info.path});
    const maxTokens = Math.min(model.trainContextSize || 2048, 2048);
    let context: LlamaEmbeddingContext;
    try {
        context = await model.createEmbeddingContext({threads, contextSize: maxTokens});
    } catch (error) {
        await model.dispose();
        throw error;
    }

    const probe = await context.getEmbeddingFor("dimension probe");
    return {
        key: embedderKey(info),
        modelId: info.id,
        dimensions: probe.vector.length,
        async embed(texts) {
            const vectors: Float32Array[] = [];
            for (const text of texts) {
                const tokens = model.tokenize(text).slice(0, Math.max(1, maxTokens - 2));
                const embedding = await context.getEmbeddingFor(tokens);
                vectors.push(normalize(Float32Array.from(embedding.vector)));
            }
            return vectors;
        },
        async dispose() {
            await context.dispose();
            await model.dispose();
        }
    };
}

function normalize(vector: Float32Array): Float32Array {
    let norm = 0;
    for (const value of vector)
        norm += value * value;

    norm = Math.sqrt(norm) || 1;
    return vector.map((value) => value / norm);
}
