import {rm} from "node:fs/promises";
import path from "node:path";
import type {Llama, LlamaModel} from "node-llama-cpp";
import type {ModelInfo} from "../contract/index.js";
import {type BlendSession, openBlendSession} from "./blend/blend.js";
import {type ChunkCacheStats, ChunkKvCache} from "./kv/chunk-cache.js";
import type {ResidentTierStats} from "./kv/resident-tier.js";
import {StoreFailures, type StoreFailureStats} from "./kv/store-failures.js";
import {type Embedder, openEmbedder} from "./library/embedder.js";
import {type GpuChoice, type LlamaLoad, type LoadedModel, loadModel, startLlama, unloadModel} from "./llama-runtime.js";
import {ModelLoadChecks} from "./model-load-probe.js";
import {Mutex} from "./mutex.js";
import type {Capability} from "./native/capability.js";

export type ModelHostOptions = {
    dataDir: string;
    threads: number;
    gpu: GpuChoice;
    /** Byte budget of the blend path's resident tier; default a share of the free VRAM on a GPU, none on CPU. */
    residentKvBytes?: number;
    /** Level of the KV codec the disk tier stores chunk KVs at (kv-codec.ts); null stores raw f16. Default {@link diskCodecLevel}. */
    kvCodecLevel?: number | null;
    /** The registered model of an id (throws when there is none). */
    modelInfo(id: string): ModelInfo;
    /** The context size to load chat models with (a setting). */
    contextSize(): number;
    /** Byte budgets of the chunk cache's RAM and disk tiers (settings; defaults below). */
    ramCacheBytes?: number;
    diskCacheBytes?: number;
    /** Layers offloaded to the GPU (a setting); node-llama-cpp chooses when absent. */
    gpuLayers?: number;
};

/** The chunk cache's counters, and the failures to store chunk KVs that questions did not wait for. */
export type CacheStats = ChunkCacheStats & {failures: StoreFailureStats};

/** Byte budgets of the chunk KV cache's host tiers. */
const chunkCacheRamBytes = 1024 ** 3;
const chunkCacheDiskBytes = 8 * 1024 ** 3;
/**
 * The codec level of chunk KVs on disk: level 2 (3.9x smaller than f16, 3.7 mnat next-token KL on stories260K's
 * 500-token chunks) rather than the codec's default 4 (6.2x, 35 mnat; 320 mnat on a 30-token chunk), until answer
 * quality under reuse is measured on a model that can answer and a controller picks the level per chunk.
 */
const diskCodecLevel = 2;

/**
 * What is loaded and who may use it: llama.cpp itself, the one chat model (behind the model lock), its blend session,
 * the chunk KV cache, the embedding model and the vocabulary-only models ingestion counts tokens with. Everything
 * that failed to start (a driver hiccup, a model that cannot blend) is retried by the next caller instead of sticking.
 */
export class ModelHost {
    private llamaPromise: Promise<LlamaLoad> | null = null;
    private loaded: LoadedModel | null = null;
    private readonly modelLock = new Mutex();
    private readonly vocabModels = new Map<string, Promise<LlamaModel>>();
    private embedderPromise: Promise<Embedder> | null = null;
    private chunkCachePromise: Promise<ChunkKvCache> | null = null;
    private readonly blendSessions = new WeakMap<LoadedModel, Promise<Capability<BlendSession>>>();
    /** Failures to store chunk KVs, over every model's blend session (`weft cache stats`). */
    public readonly storeFailures = new StoreFailures();

    public constructor(private readonly options: ModelHostOptions) {}

    public get threads(): number {
        return this.options.threads;
    }

    public get loadedModelId(): string | null {
        return this.loaded?.info.id ?? null;
    }

    /** llama.cpp, started once (a failed start is retried by the next caller). */
    public async llama(): Promise<Llama> {
        return (await this.load()).llama;
    }

    /** llama.cpp if it has started, without starting it. */
    public async startedLlama(): Promise<Llama | null> {
        return this.llamaPromise == null ? null : (await this.llamaPromise.catch(() => null))?.llama ?? null;
    }

    private load(): Promise<LlamaLoad> {
        if (this.llamaPromise == null) {
            const starting = startLlama({gpu: this.options.gpu, threads: this.options.threads});
            this.llamaPromise = starting;
            starting.catch(() => {
                if (this.llamaPromise === starting)
                    this.llamaPromise = null;
            });
        }
        return this.llamaPromise;
    }

    /** Runs `run` holding the model lock (one question, one warmed chunk or one load at a time). */
    public async withLock<T>(run: () => Promise<T>): Promise<T> {
        const release = await this.modelLock.lock();
        try {
            return await run();
        } finally {
            release();
        }
    }

    /** Takes the model lock; the caller releases it. */
    public lock(): Promise<() => void> {
        return this.modelLock.lock();
    }

    /** The chat model `modelId`, loaded (unloading another one first). Callers hold the model lock. */
    public async ensureLoaded(modelId: string): Promise<LoadedModel> {
        if (this.loaded?.info.id === modelId)
            return this.loaded;

        await this.unloadCurrent();
        const llama = await this.llama();
        this.loaded = await loadModel(llama, this.options.modelInfo(modelId), {
            contextSize: this.options.contextSize(), threads: this.options.threads,
            ...(this.options.gpuLayers != null ? {gpuLayers: this.options.gpuLayers} : {}),
            // A model file's first load runs in a child, where a llama.cpp abort is only an error.
            beforeLoad: (modelPath) => new ModelLoadChecks(this.options.dataDir, this.options.gpu).ensure(modelPath)
        });
        return this.loaded;
    }

    /** Unloads `modelId` if it is the loaded one (taking the model lock). */
    public async unloadIfLoaded(modelId: string): Promise<void> {
        await this.withLock(async () => {
            if (this.loaded?.info.id === modelId)
                await this.unloadCurrent();
        });
    }

    /** Unloads the chat model, freeing its blend session's resident (GPU) KVs first. Callers hold the model lock. */
    private async unloadCurrent(): Promise<void> {
        const loaded = this.loaded;
        if (loaded == null)
            return;

        this.loaded = null;
        const blend = await this.blendSessions.get(loaded)?.catch(() => null);
        if (blend?.available)
            await blend.value.close();
        await unloadModel(loaded);
    }

    /** The blend path for this model, or why it cannot run here. A rejected open is retried by the next caller. */
    public blendSession(loaded: LoadedModel): Promise<Capability<BlendSession>> {
        let found = this.blendSessions.get(loaded);
        if (found == null) {
            const opening = (async () => {
                const {llama, blend} = await this.load();
                return openBlendSession({
                    llama, build: blend, model: loaded.model, context: loaded.context, sequence: loaded.sequence,
                    modelPath: loaded.info.path, modelName: loaded.info.name, cache: await this.chunkCache(), threads: this.options.threads, failures: this.storeFailures,
                    ...(this.options.residentKvBytes != null ? {residentBudgetBytes: this.options.residentKvBytes} : {})
                });
            })();
            found = opening;
            this.blendSessions.set(loaded, opening);
            opening.catch(() => {
                if (this.blendSessions.get(loaded) === opening)
                    this.blendSessions.delete(loaded);
            });
        }
        return found;
    }

    /** The loaded model's GPU-resident tier, if it has one (the Cache view). */
    public async residentStats(): Promise<ResidentTierStats | null> {
        const session = this.loaded != null ? await this.blendSessions.get(this.loaded)?.catch(() => null) : null;
        return session?.available === true ? session.value.resident?.stats() ?? null : null;
    }

    public chunkCache(): Promise<ChunkKvCache> {
        const level = this.options.kvCodecLevel === undefined ? diskCodecLevel : this.options.kvCodecLevel;
        this.chunkCachePromise ??= ChunkKvCache.open({
            dataDir: this.options.dataDir, ramBudgetBytes: this.options.ramCacheBytes ?? chunkCacheRamBytes,
            diskBudgetBytes: this.options.diskCacheBytes ?? chunkCacheDiskBytes,
            codec: level == null ? null : {level, threads: this.options.threads}
        });
        return this.chunkCachePromise;
    }

    /** Resolves once the disk files of chunks the last questions computed are written (they are written after the question). */
    private async chunkStoresSettled(): Promise<void> {
        const session = this.loaded != null ? await this.blendSessions.get(this.loaded)?.catch(() => null) : null;
        if (session?.available === true)
            await session.value.storesSettled();
    }

    public async cacheStats(): Promise<CacheStats> {
        await this.chunkStoresSettled();
        return {...(await this.chunkCache()).stats(), failures: this.storeFailures.snapshot()};
    }

    /** Drops every chunk KV cache, in RAM and on disk, for every model. */
    public async clearChunkCache(): Promise<void> {
        await this.chunkStoresSettled();  // a file written after the folder is removed would outlive the clear
        (await this.chunkCache()).clearRam();
        await rm(path.join(this.options.dataDir, "kvcache"), {recursive: true, force: true});
    }

    /** `info`'s model loaded vocabulary-only (for counting tokens), once per file. */
    public async vocabModel(info: ModelInfo): Promise<LlamaModel> {
        let vocab = this.vocabModels.get(info.path);
        if (vocab == null) {
            vocab = this.llama().then((llama) => llama.loadModel({modelPath: info.path, vocabOnly: true}));
            this.vocabModels.set(info.path, vocab);
            vocab.catch(() => this.vocabModels.delete(info.path));
        }
        return vocab;
    }

    /** The embedding model `info`, loaded once (a failed load is retried). */
    public embedder(info: ModelInfo): Promise<Embedder> {
        if (this.embedderPromise == null) {
            const opening = this.llama().then((llama) => openEmbedder(llama, info, this.options.threads));
            this.embedderPromise = opening;
            opening.catch(() => {
                if (this.embedderPromise === opening)
                    this.embedderPromise = null;
            });
        }
        return this.embedderPromise;
    }

    /** Disposes the embedding model (another one was chosen). */
    public async dropEmbedder(): Promise<void> {
        const previous = this.embedderPromise;
        this.embedderPromise = null;
        await (await previous?.catch(() => null))?.dispose();
    }

    /** Unloads everything and disposes llama.cpp. */
    public async close(): Promise<void> {
        await this.withLock(async () => {
            await this.unloadCurrent();
            await this.dropEmbedder();
            for (const vocab of this.vocabModels.values())
                await (await vocab.catch(() => null))?.dispose();
            await (await this.startedLlama())?.dispose();
        });
    }
}
