import os from "node:os";
import {GgufInsights, InsufficientMemoryError, type Llama, type LlamaContext, type LlamaContextSequence, type LlamaModel} from "node-llama-cpp";
import {type Backend, EngineError, type ModelInfo} from "../contract/index.js";
import {inspectGguf} from "./gguf-check.js";
import {createModelContext} from "./context-batch.js";

export {type GpuChoice, type LlamaLoad, startLlama} from "./native/llama-loader.js";

export function backendOf(llama: Llama): Backend {
    return llama.gpu === false ? "cpu" : llama.gpu;
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

export async function unloadModel(loaded: LoadedModel): Promise<void> {
    await loaded.context.dispose();
    await loaded.model.dispose();
}

function formatGiB(bytes: number): string {
    return `${(bytes / 1024 ** 3).toFixed(1)} GiB`;
}
