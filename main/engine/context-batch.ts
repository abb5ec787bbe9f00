// A context's batch sizes: how many tokens node-llama-cpp feeds per decode, and the ubatch Weft's own decodes may fill.
// Kept apart from llama-runtime.ts (and the contract it imports) so the GPU benchmark creates its context the app's way.
import os from "node:os";
import type {Llama, LlamaContext, LlamaModel} from "node-llama-cpp";
import {limitEvaluationBatch} from "./native/native-addon.js";

/**
 * Tokens node-llama-cpp feeds per decode: a prompt's prefill, the question, generation. node-llama-cpp's default is
 * 512; on a GPU every decode streams all the weights once, so larger ones prefill faster up to a point: 2048 is
 * llama.cpp's own default and the fastest full prefill measured on an H200 with an 8B model (8k tokens: 372 ms against
 * 397 at 8192; 32k: 2,427 against 2,519; bench/GPU.md, session 8), as several ubatches let each one's host work
 * overlap the device's work on the one before. The CPU keeps 512: its prefill gains nothing from more.
 */
export function evaluationBatchSize(llama: Llama, contextSize: number): number {
    return Math.max(1, Math.min(contextSize, llama.gpu === false ? 512 : gpuEvaluationBatchTokens));
}

/** {@link evaluationBatchSize} on a GPU. */
export const gpuEvaluationBatchTokens = 2048;

/** The GPU context's ubatch where the card has room for it: one fused blend decode may hold this many tokens. */
export const gpuDecodeBatchTokens = 8192;
/**
 * The CPU context's ubatch where RAM has room for it. At 512 a blend's own decodes were split: hkvd's fused blend of a
 * 4k prompt into 8 decodes, each carrying one label's ~17 tokens through every layer in a query tile that costs what 64
 * rows cost, and chunk-head's recompute into two. On the 32-layer bench model at 4k tokens (`npm run bench -- ttft
 * --layers 32`, bench/RESULTS.md, session 13) 4096 took hkvd 0.15 from 6,254 to 5,284 ms (0.261 to 0.232 of a full
 * prefill).
 */
export const cpuDecodeBatchTokens = 4096;
/** VRAM (or RAM, on a CPU) left free beside a context of the larger ubatch (the resident chunk tier and other allocations live there). */
export const decodeBatchHeadroomBytes = 4 * 1024 ** 3;

/**
 * The context's ubatch: the most tokens one of Weft's own decodes holds (hkvd's fused blend, chunk-head's recompute),
 * while node-llama-cpp still feeds `evaluationTokens` per decode (limitEvaluationBatch). hkvd's fused blend runs one
 * decode per ubatch, each streaming the weights once: on the H200 at 32k tokens, ubatch 8192 took hkvd 0.15 from 881 to
 * 683 ms (at 8k, 150 against 147: two decodes instead of five, each waiting on its own host work). A larger ubatch
 * costs compute buffers (node-llama-cpp's estimate) and patch 0008's in-graph causal mask (F32 and F16, n_ctx x
 * ubatch), so it is taken only where the device (the GPU, or RAM for a CPU context) has that and
 * `decodeBatchHeadroomBytes` free besides.
 */
export function chooseDecodeBatch(options: {
    contextSize: number,
    evaluationTokens: number,
    /** Free memory of the device that holds the context: VRAM, or RAM for a CPU context. */
    freeBytes: number,
    /** node-llama-cpp's estimate of that memory for this context with a ubatch of `maxTokens` */
    contextBytes: number,
    /** The ubatch wanted: `gpuDecodeBatchTokens` (default) or `cpuDecodeBatchTokens`. */
    maxTokens?: number
}): number {
    const tokens = Math.min(options.contextSize, options.maxTokens ?? gpuDecodeBatchTokens);
    if (tokens <= options.evaluationTokens)
        return options.evaluationTokens;
    const maskBytes = options.contextSize * tokens * 6;
    return options.contextBytes + maskBytes + decodeBatchHeadroomBytes <= options.freeBytes ? tokens : options.evaluationTokens;
}

/**
 * One sequence's context with Weft's batch sizes: node-llama-cpp feeds `evaluationBatchSize` tokens per decode, and
 * where the device has room the ubatch is `chooseDecodeBatch`'s larger one for Weft's own decodes (limitEvaluationBatch).
 */
export async function createModelContext(llama: Llama, model: LlamaModel, options: {contextSize: number, threads: number, flashAttention?: boolean}):
    Promise<LlamaContext> {
    const {contextSize, threads} = options;
    const evaluationTokens = evaluationBatchSize(llama, contextSize);
    const flash = options.flashAttention != null ? {flashAttention: options.flashAttention} : {};
    let batchSize = evaluationTokens;
    const cpu = llama.gpu === false;
    const maxTokens = cpu ? cpuDecodeBatchTokens : gpuDecodeBatchTokens;
    if (Math.min(contextSize, maxTokens) > evaluationTokens) {
        try {
            const estimate = await model.fileInsights.estimateContextResourceRequirementsV2({
                contextSize, modelGpuLayers: model.gpuLayers, batchSize: Math.min(contextSize, maxTokens), sequences: 1, ...flash
            });
            batchSize = chooseDecodeBatch({
                contextSize, evaluationTokens, maxTokens, freeBytes: cpu ? os.freemem() : (await llama.getVramState()).free,
                contextBytes: cpu ? estimate.cpuRam : estimate.gpuVram
            });
        } catch {
            // no estimate for this model or device: the ubatch node-llama-cpp feeds
        }
    }
    let context: LlamaContext;
    try {
        context = await model.createContext({contextSize, threads, sequences: 1, batchSize, ...flash});
    } catch (error) {
        if (batchSize === evaluationTokens)
            throw error;
        // the estimate was short: the ubatch node-llama-cpp feeds anyway
        batchSize = evaluationTokens;
        context = await model.createContext({contextSize, threads, sequences: 1, batchSize, ...flash});
    }
    if (batchSize > evaluationTokens) {
        try {
            limitEvaluationBatch(context, evaluationTokens);
        } catch {
            // node-llama-cpp's internals changed: a context of the plain batch rather than a slower full prefill
            await context.dispose();
            context = await model.createContext({contextSize, threads, sequences: 1, batchSize: evaluationTokens, ...flash});
        }
    }
    return context;
}
