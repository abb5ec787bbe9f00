import os from "node:os";
import {GgufInsights, InsufficientMemoryError, type Llama, type LlamaContext, type LlamaContextSequence, type LlamaModel} from "node-llama-cpp";
import {type Backend, EngineError, type ModelInfo} from "../contract/index.js";
import {inspectGguf} from "./gguf-check.js";
import {limitEvaluationBatch} from "./native/native-addon.js";

export {type GpuChoice, type LlamaLoad, startLlama} from "./native/llama-loader.js";

export function backendOf(llama: Llama): Backend {
    return llama.gpu === false ? "cpu" : llama.gpu;
}

/**
 * Tokens node-llama-cpp feeds per decode: a prompt's prefill, the question, generation. node-llama-cpp's default is
 * 512; on a GPU every decode streams all the weights once, so larger ones prefill faster up to a point: 2048 is
 * llama.cpp's own default and the fastest full prefill measured on an H200 with an 8B model (8k tokens: 372 ms against
 * 397 at 8192; 32k: 2,427 against 2,519; bench/GPU.md, session 8), as several ubatches let each one's host work
 * overlap the device's work on the one before. The CPU keeps 512: its prefill gains nothing from more.
 */
export function evaluationBatchSize(llama: Llama, contextSize: number): number {
    return Math.max(1, Math.min(contextSize, llama.gpu === false ? 512 : 2048));
}

/** The GPU context's ubatch where the card has room for it: one fused blend decode may hold this many tokens. */
export const gpuDecodeBatchTokens = 8192;
/** VRAM left free beside a context of the larger ubatch (the resident chunk tier and other allocations live there). */
export const decodeBatchHeadroomBytes = 4 * 1024 ** 3;

/**
 * The context's ubatch: the most tokens one of Weft's own decodes holds (hkvd's fused blend, chunk-head's recompute),
 * while node-llama-cpp still feeds `evaluationTokens` per decode (limitEvaluationBatch). hkvd's fused blend runs one
 * decode per ubatch, each streaming the weights once: on the H200 at 32k tokens, ubatch 8192 took hkvd 0.15 from 881 to
 * 683 ms (at 8k, 150 against 147: two decodes instead of five, each waiting on its own host work). A larger ubatch
 * costs compute buffers (node-llama-cpp's estimate) and patch 0008's in-graph causal mask (F32 and F16, n_ctx x
 * ubatch), so it is taken only where the GPU has that and `decodeBatchHeadroomBytes` free besides.
 */
export function chooseDecodeBatch(options: {
    contextSize: number,
    evaluationTokens: number,
    freeVramBytes: number,
    /** node-llama-cpp's VRAM estimate for this context with a ubatch of `gpuDecodeBatchTokens` */
    contextVramBytes: number
}): number {
    const tokens = Math.min(options.contextSize, gpuDecodeBatchTokens);
    if (tokens <= options.evaluationTokens)
        return options.evaluationTokens;
    const maskBytes = options.contextSize * tokens * 6;
    return options.contextVramBytes + maskBytes + decodeBatchHeadroomBytes <= options.freeVramBytes ? tokens : options.evaluationTokens;
}

export type LoadedModel = {
    info: ModelInfo;
    model: LlamaModel;
    context: LlamaContext;
    sequence: LlamaContextSequence;
    contextSize: number;
    /**
     * False after a blend strategy left approximate KV in the sequence: exact prefix reuse must not build on it.
     */
    sequenceKvExact?: boolean;
    /** Measured prefill cost of this model here (moving average over full prefills), for fullPrefillEstimateMs. */
    prefillMsPerToken?: number;
};

/**
 * Loads a registered model with one context. Memory is checked up front so a model that cannot fit
 * fails with `model_too_large` instead of the process being killed.
 */
export async function loadModel(llama: Llama, info: ModelInfo, options: {
    contextSize: number,
    threads: number,
    gpuLayers?: number,
    /** Runs before the load, once memory is known to suffice (the engine loads a new file in a child first). */
    beforeLoad?: (modelPath: string) => Promise<void>
}): Promise<LoadedModel> {
    const summary = await inspectGguf(info.path);
    if (llama.gpu === false) {
        const insights = await GgufInsights.from(summary.info, llama);
        const needBytes = insights.modelSize;
        const haveBytes = os.totalmem();
        if (needBytes > haveBytes * 0.9)
            throw new EngineError("model_too_large",
                `${info.name} needs ${formatGiB(needBytes)} of memory for its weights but this machine has ${formatGiB(haveBytes)}; ` +
                "choose a smaller or more quantized model");
    }

    await options.beforeLoad?.(info.path);
    let model: LlamaModel;
    try {
        model = await llama.loadModel({modelPath: info.path, ...(options.gpuLayers != null ? {gpuLayers: options.gpuLayers} : {})});
    } catch (error) {
        if (error instanceof InsufficientMemoryError)
            throw new EngineError("model_too_large", `${info.name} does not fit in memory: ${error.message}`, {cause: error});

        throw new EngineError("model_invalid", `could not load ${info.path}: ${(error as Error).message}`, {cause: error});
    }

    try {
        const trainContext = model.trainContextSize > 0 ? model.trainContextSize : options.contextSize;
        const contextSize = Math.min(options.contextSize, trainContext);
        const context = await createModelContext(llama, model, {contextSize, threads: options.threads});
        return {info, model, context, sequence: context.getSequence(), contextSize: context.contextSize};
    } catch (error) {
        await model.dispose();
        if (error instanceof InsufficientMemoryError)
            throw new EngineError("model_too_large", `not enough memory for a context of ${options.contextSize} tokens: ${error.message}`, {cause: error});

        throw error;
    }
}

/**
 * One sequence's context with Weft's batch sizes: node-llama-cpp feeds `evaluationBatchSize` tokens per decode, and on
 * a GPU with room the ubatch is `chooseDecodeBatch`'s larger one for Weft's own decodes (limitEvaluationBatch).
 */
export async function createModelContext(llama: Llama, model: LlamaModel, options: {contextSize: number, threads: number, flashAttention?: boolean}):
    Promise<LlamaContext> {
    const {contextSize, threads} = options;
    const evaluationTokens = evaluationBatchSize(llama, contextSize);
    const flash = options.flashAttention != null ? {flashAttention: options.flashAttention} : {};
    let batchSize = llama.gpu === false ? evaluationTokens : chooseDecodeBatch({
        contextSize, evaluationTokens, freeVramBytes: (await llama.getVramState()).free,
        contextVramBytes: (await model.fileInsights.estimateContextResourceRequirementsV2({
            contextSize, modelGpuLayers: model.gpuLayers, batchSize: Math.min(contextSize, gpuDecodeBatchTokens), sequences: 1, ...flash
        })).gpuVram
    });
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
    if (batchSize > evaluationTokens)
        limitEvaluationBatch(context, evaluationTokens);
    return context;
}

export async function unloadModel(loaded: LoadedModel): Promise<void> {
    await loaded.context.dispose();
    await loaded.model.dispose();
}

function formatGiB(bytes: number): string {
    return `${(bytes / 1024 ** 3).toFixed(1)} GiB`;
}
