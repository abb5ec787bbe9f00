import {mkdir} from "node:fs/promises";
import {setTimeout as delay} from "node:timers/promises";
import type {Llama, LlamaModel} from "node-llama-cpp";
import {
    type AnswerStats, type CacheWarmEvent, type CacheWarmStatus, type ChatEvent, type ChatRequestParsed, type Citation, type EngineApi,
    EngineError, type EngineStatus, type FolderInfo, type IngestEvent, type ModelInfo, type Strategy, toErrorShape
} from "../contract/index.js";
import packageJson from "../../package.json" with {type: "json"};
import {downloadModel, type DownloadProgress} from "./download.js";
import {rm} from "node:fs/promises";
import path from "node:path";
import {type BlendContext, chunkCachedOnDisk, chunkKv, closeResidentTier, openBlendContext, prepareBlend, warmResidentChunk} from "./blend/blend.js";
import {ChunkKvCache, type ChunkCacheStats} from "./kv/chunk-cache.js";
import {folderIdFor} from "./library/store.js";
import {type PreparedPrompt, prepareFull, preparePrefix} from "./blend/prepare.js";
import {resolveStrategy} from "./blend/auto.js";
import {CacheWarmer, type WarmChunkOutcome, WarmUnavailable} from "./cache-warmer.js";
import {generate} from "./generate.js";
import {type Embedder, openEmbedder} from "./library/embedder.js";
import {estimateTokenizer, Library, type Tokenizer} from "./library/library.js";
import {FolderWatcher} from "./library/watcher.js";
import {backendOf, type GpuChoice, type LoadedModel, loadModel, startLlama, unloadModel} from "./llama-runtime.js";
import {ModelRegistry} from "./model-registry.js";
import {Mutex} from "./mutex.js";
import {buildPrompt, type BuiltPrompt} from "./prompt.js";
import {loadSettings, resolveThreads, saveSettings, type Settings} from "./settings.js";

/** The shortest gap between two `watchCacheWarm` events. */
const cacheWarmEventMs = 150;

export type EngineOptions = {
    dataDir: string;
    /** Explicit thread count; WEFT_THREADS or the core count when absent. */
    threads?: number;
    gpu?: GpuChoice;
    /**
     * Byte budget of the blend path's GPU-resident tier of chunk KVs; default a quarter of the free VRAM (at most
     * 4 GiB) on a GPU and none on CPU. Tests set it on CPU, where the tier lives in RAM.
     */
    residentKvBytes?: number;
};

/**
 * The headless engine: model registry, model loading and chat. Every transport (CLI, serve socket,
 * Electron IPC) drives this one object through the contract's EngineApi.
 */
export class Engine implements EngineApi {
    private llamaPromise: Promise<Llama> | null = null;
    private loaded: LoadedModel | null = null;
    private readonly modelLock = new Mutex();
    private closed = false;
    private vocabModels = new Map<string, Promise<LlamaModel>>();
    private embedderPromise: Promise<Embedder> | null = null;
    private chunkCachePromise: Promise<ChunkKvCache> | null = null;
    private blendContexts = new WeakMap<LoadedModel, Promise<BlendContext | string>>();
    private residentKvBytes: number | undefined;
    private readonly library: Library;
    private watcher: FolderWatcher | null = null;
    private readonly maintenance = new AbortController();
    /** Questions and ingests waiting or running: background cache warming gives way to them. */
    private foreground = 0;
    private foregroundIdleWaiters: (() => void)[] = [];
    private readonly cacheWarmer: CacheWarmer;

    private constructor(
        public readonly dataDir: string,
        public readonly threads: number,
        private readonly gpu: GpuChoice,
        private readonly registry: ModelRegistry,
        private settings: Settings
    ) {
        this.library = new Library(dataDir, () => this.ingestTokenizer(), () => this.embedder());
        this.cacheWarmer = new CacheWarmer({
            activeModelId: () => this.resolveModelId(undefined, false),
            listChunks: () => this.listChunkTexts(),
            whenForegroundIdle: (signal) => this.whenForegroundIdle(signal),
            warmChunk: (modelId, text) => this.warmChunkInBackground(modelId, text),
            diskEvictions: async () => (await this.chunkCache()).stats().disk.evictions
        });
    }

    public static async open(options: EngineOptions): Promise<Engine> {
        await mkdir(options.dataDir, {recursive: true});
        const [registry, settings] = await Promise.all([ModelRegistry.open(options.dataDir), loadSettings(options.dataDir)]);
        const engine = new Engine(options.dataDir, resolveThreads(options.threads), options.gpu ?? "auto", registry, settings);
        engine.residentKvBytes = options.residentKvBytes;
        return engine;
    }

    /** Starts llama.cpp and loads the active model ahead of the first question (serve and the app call this). */
    public async warmUp(): Promise<void> {
        await this.llama();
        const modelId = this.resolveModelId(undefined, false);
        if (modelId != null) {
            const release = await this.modelLock.lock();
            try {
                await this.ensureLoaded(modelId);
            } finally {
                release();
            }
        }
    }

    public async getStatus(): Promise<EngineStatus> {
        const llama = this.llamaPromise != null ? await this.llamaPromise.catch(() => null) : null;
        return {
            version: packageJson.version,
            backend: llama != null ? backendOf(llama) : null,
            threads: this.threads,
            dataDir: this.dataDir,
            activeModelId: this.resolveModelId(undefined, false),
            embeddingModelId: this.settings.embeddingModelId != null && this.registry.get(this.settings.embeddingModelId) != null
                ? this.settings.embeddingModelId : null,
            loadedModelId: this.loaded?.info.id ?? null,
            cacheWarm: this.cacheWarmer.status()
        };
    }

    public async listModels(): Promise<ModelInfo[]> {
        return this.registry.list();
    }

    public async addModel(input: {path: string}): Promise<ModelInfo> {
        const activeBefore = this.resolveModelId(undefined, false);
        const info = await this.registry.add(input.path);
        if (this.settings.activeModelId == null || this.registry.get(this.settings.activeModelId) == null)
            await this.updateSettings({activeModelId: info.id});

        if (this.resolveModelId(undefined, false) !== activeBefore)
            this.cacheWarmer.trigger();

        return info;
    }

    /** Downloads a model into the data dir (resuming a partial download) and registers it. */
    public async pullModel(uri: string, options: {onProgress?: (progress: DownloadProgress) => void, signal?: AbortSignal} = {}): Promise<ModelInfo> {
        const filePath = await downloadModel(uri, this.dataDir, options);
        return this.addModel({path: filePath});
    }

    public async removeModel(input: {id: string}): Promise<{removed: boolean}> {
        const activeBefore = this.resolveModelId(undefined, false);
        const release = await this.modelLock.lock();
        try {
            if (this.loaded?.info.id === input.id) {
                await this.unloadLoaded(this.loaded);
                this.loaded = null;
            }
        } finally {
            release();
        }

        const removed = await this.registry.remove(input.id);
        if (removed && this.settings.activeModelId === input.id)
            await this.updateSettings({activeModelId: this.registry.list()[0]?.id ?? null});

        if (removed && this.resolveModelId(undefined, false) !== activeBefore)
            this.cacheWarmer.trigger();

        return {removed};
    }

    public async selectModel(input: {id: string}): Promise<ModelInfo> {
        const info = this.registry.require(input.id);
        const changed = this.resolveModelId(undefined, false) !== info.id;
        await this.updateSettings({activeModelId: info.id});
        // The new model's chunk caches (another fingerprint) are computed in the background.
        if (changed)
            this.cacheWarmer.trigger();

        return info;
    }

    /** Choosing another embedding model re-embeds every folder at its next ingest (its own vectors table). */
    public async setEmbeddingModel(input: {id: string | null}): Promise<EngineStatus> {
        if (input.id != null)
            this.registry.require(input.id);

        if (input.id !== this.settings.embeddingModelId) {
            const previous = this.embedderPromise;
            this.embedderPromise = null;
            await (await previous?.catch(() => null))?.dispose();
            await this.updateSettings({embeddingModelId: input.id});
        }
        return this.getStatus();
    }

    public async listFolders(): Promise<FolderInfo[]> {
        return this.library.listFolders();
    }

    public async removeFolder(input: {id: string}): Promise<{removed: boolean}> {
        const folder = (await this.library.listFolders()).find((entry) => entry.id === input.id);
        if (folder != null)
            await this.watcher?.remove(folder.path);

        const removed = await this.library.removeFolder(input.id);
        // A pass under way would otherwise go on computing the removed folder's chunks.
        if (removed)
            this.cacheWarmer.restartIfActive();

        return {removed};
    }

    public async* ingestFolder(input: {path: string}, signal: AbortSignal, onlyPaths?: string[]): AsyncGenerator<IngestEvent> {
        const endForeground = this.beginForeground();
        try {
            for await (const event of this.library.ingest(input.path, signal, onlyPaths)) {
                if (event.type === "done" && !event.cancelled) {
                    await this.watcher?.add(event.summary.folder);
                    if (event.summary.changedFiles > 0 || event.summary.removedFiles > 0)
                        this.cacheWarmer.trigger();
                }

                yield event;
            }
        } finally {
            endForeground();
        }
    }

    /**
     * For long-running hosts (serve, the app): catches up with changes made while Weft was closed, then
     * keeps every folder's index current as files are created, changed, renamed or deleted.
     */
    public async maintainLibrary(log: (line: string) => void): Promise<void> {
        this.watcher ??= new FolderWatcher(({folder, paths}) => {
            void this.drainIngest(folder, paths, log);
        });
        for (const folder of await this.library.listFolders()) {
            await this.drainIngest(folder.path, undefined, log);
            await this.watcher.add(folder.path).catch((error) => log(`cannot watch ${folder.path}: ${(error as Error).message}`));
        }
    }

    private async drainIngest(folder: string, paths: string[] | undefined, log: (line: string) => void): Promise<void> {
        const endForeground = this.beginForeground();
        try {
            for await (const event of this.library.ingest(folder, this.maintenance.signal, paths)) {
                if (event.type === "error")
                    log(`indexing ${folder} failed: ${event.error.message}`);
                else if (event.type === "done" && (event.summary.changedFiles > 0 || event.summary.removedFiles > 0)) {
                    log(`re-indexed ${folder}: ${event.summary.changedFiles} changed, ${event.summary.removedFiles} removed`);
                    if (!event.cancelled)
                        this.cacheWarmer.trigger();
                }
            }
        } finally {
            endForeground();
        }
    }

    /**
     * For long-running hosts (serve, the app): from now on the chunk KV caches of the whole library are computed in
     * the background for the active model, after every ingest that changed something and every model change, starting
     * with a pass now. Warming gives way to questions and ingests, and can be paused.
     */
    public startCacheWarming(log?: (line: string) => void): void {
        if (!this.closed)
            this.cacheWarmer.start(log);
    }

    public async pauseCacheWarm(): Promise<CacheWarmStatus> {
        return this.cacheWarmer.pause();
    }

    public async resumeCacheWarm(): Promise<CacheWarmStatus> {
        return this.cacheWarmer.resume();
    }

    /** The warming status now, then after every change (at most every {@link cacheWarmEventMs}), until cancelled. */
    public async* watchCacheWarm(_input: Record<string, never>, signal: AbortSignal): AsyncGenerator<CacheWarmEvent> {
        let changed = true;
        let wake: (() => void) | null = null;
        const poke = () => {
            changed = true;
            wake?.();
        };
        const unsubscribe = this.cacheWarmer.subscribe(poke);
        const onAbort = () => wake?.();
        signal.addEventListener("abort", onAbort);
        try {
            while (!signal.aborted && !this.closed) {
                if (!changed) {
                    await new Promise<void>((resolve) => {
                        wake = resolve;
                    });
                    wake = null;
                    continue;
                }

                changed = false;
                yield {type: "status", status: this.cacheWarmer.status()};
                // Hits go by fast: one event per interval carries the latest counts.
                await delay(cacheWarmEventMs, undefined, {signal}).catch(() => {});
            }
            yield {type: "done"};
        } finally {
            unsubscribe();
            signal.removeEventListener("abort", onAbort);
        }
    }

    private beginForeground(): () => void {
        this.foreground++;
        let ended = false;
        return () => {
            if (ended)
                return;

            ended = true;
            if (--this.foreground === 0) {
                const waiters = this.foregroundIdleWaiters;
                this.foregroundIdleWaiters = [];
                for (const resolve of waiters)
                    resolve();
            }
        };
    }

    private whenForegroundIdle(signal: AbortSignal): Promise<void> {
        if (this.foreground === 0 || signal.aborted)
            return Promise.resolve();

        return new Promise((resolve) => {
            const done = () => {
                signal.removeEventListener("abort", done);
                resolve();
            };
            signal.addEventListener("abort", done, {once: true});
            this.foregroundIdleWaiters.push(done);
        });
    }

    private async listChunkTexts(): Promise<string[]> {
        const store = await this.library.store();
        const texts: string[] = [];
        for await (const batch of store.chunkTexts(null))
            for (const chunk of batch)
                texts.push(chunk.text);

        return texts;
    }

    /** One chunk of background warming, under the model lock; gives the lock straight back when a question waits. */
    private async warmChunkInBackground(modelId: string, text: string): Promise<WarmChunkOutcome> {
        const release = await this.modelLock.lock();
        try {
            if (this.closed || this.foreground > 0)
                return "yielded";

            let blend: BlendContext | string;
            let loaded: LoadedModel;
            try {
                loaded = await this.ensureLoaded(modelId);
                blend = await this.blendContext(loaded);
            } catch (error) {
                throw new WarmUnavailable(`cannot load the model: ${toErrorShape(error).message}`, {cause: error});
            }
            if (typeof blend === "string")
                throw new WarmUnavailable(blend);

            const tokens = loaded.model.tokenize(text);
            // An empty chunk has no KV; a chunk whose file is there needs no read (a full pass stays cheap), unless the
            // resident tier has room for it.
            if (tokens.length === 0)
                return "cached";
            const loadedKv = await chunkCachedOnDisk(blend, tokens) ? null : await chunkKv(blend, tokens);
            // On a GPU, also into the resident tier while it has free room (a no-op without one).
            await warmResidentChunk(blend, tokens, loadedKv?.body);
            return loadedKv == null || loadedKv.hit ? "cached" : "computed";
        } finally {
            release();
        }
    }

    public async* chat(request: ChatRequestParsed, signal: AbortSignal): AsyncGenerator<ChatEvent> {
        const startedAt = performance.now();
        let release: (() => void) | null = null;
        const endForeground = this.beginForeground();
        try {
            const modelId = this.resolveModelId(request.modelId, true)!;
            release = await this.modelLock.lock();
            if (signal.aborted)
                throw new EngineError("cancelled", "the question was cancelled before it started");

            const loadStartedAt = performance.now();
            const loaded = await this.ensureLoaded(modelId);
            const modelLoadMs = performance.now() - loadStartedAt;
            const llama = await this.llama();

            const retrievalStartedAt = performance.now();
            let citations: Citation[] = await this.library.retrieve(request.question, request.topK);
            const retrievalMs = performance.now() - retrievalStartedAt;

            // The lowest-ranked sources give way until the prompt leaves room for the answer.
            const answerRoom = Math.min(request.maxTokens, Math.floor(loaded.contextSize / 4));
            const build = () => buildPrompt(loaded.model, request.question,
                citations.map((citation) => ({n: citation.n, path: citation.path, text: citation.text ?? "", contentHash: citation.contentHash})),
                loaded.info.hasChatTemplate);
            let prompt = build();
            while (citations.length > 0 && prompt.tokens.length + answerRoom > loaded.contextSize) {
                citations = citations.slice(0, -1);
                prompt = build();
            }
            const promptTokens = prompt.tokens;

            yield {type: "retrieval", citations, retrievalMs};
            if (promptTokens.length >= loaded.contextSize)
                throw new EngineError("bad_request",
                    `the prompt is ${promptTokens.length} tokens, more than the model's context of ${loaded.contextSize}`);

            const requested = resolveStrategy(request.strategy, request.ratio);
            const prepared = await this.preparePrompt(loaded, prompt, requested.strategy, requested.ratio);
            const generation = generate(loaded.model, loaded.sequence, prepared.tokensToEvaluate, {
                maxTokens: request.maxTokens,
                temperature: request.temperature,
                signal
            });

            let answer = "";
            let prefillMs = 0;
            let step = await generation.next();
            while (step.done !== true) {
                const value = step.value;
                if (value.type === "prefilled") {
                    prefillMs = value.prefillMs;
                    yield {
                        type: "cacheStats",
                        stats: {
                            strategy: prepared.strategy,
                            promptTokens: promptTokens.length,
                            reusedTokens: prepared.reusedTokens,
                            recomputedTokens: prepared.recomputedTokens,
                            freshTokens: prepared.freshTokens,
                            prefillMs
                        }
                    };
                } else {
                    answer += value.text;
                    yield {type: "token", text: value.text};
                }

                step = await generation.next();
            }

            const result = step.value;
            const finishedAt = performance.now();
            const ttftMs = result.firstTokenAt != null ? result.firstTokenAt - startedAt : finishedAt - startedAt;
            const decodeSeconds = result.firstTokenAt != null ? (finishedAt - result.firstTokenAt) / 1000 : 0;
            const freshTokens = prepared.freshTokens;
            if (prepared.reusedTokens === 0 && freshTokens >= 16 && prefillMs > 0)
                loaded.prefillMsPerToken = loaded.prefillMsPerToken == null
                    ? prefillMs / freshTokens
                    : 0.7 * loaded.prefillMsPerToken + 0.3 * (prefillMs / freshTokens);

            const stats: AnswerStats = {
                backend: backendOf(llama),
                modelId: loaded.info.id,
                strategy: prepared.strategy,
                ratio: prepared.ratio,
                ...(prepared.fallbackReason != null ? {strategyFallbackReason: prepared.fallbackReason} : {}),
                promptTokens: promptTokens.length,
                reusedTokens: prepared.reusedTokens,
                recomputedTokens: prepared.recomputedTokens,
                freshTokens,
                completionTokens: result.completionTokens,
                kvBytesLoaded: prepared.kvBytesLoaded,
                kvLoadMs: prepared.kvLoadMs,
                kvLoadGBps: prepared.kvLoadMs > 0 ? prepared.kvBytesLoaded / 1e6 / prepared.kvLoadMs : 0,
                kvResidentBytes: prepared.splice?.residentBytes ?? 0,
                kvResidentMs: prepared.splice?.residentMs ?? 0,
                selectMs: prepared.selectMs,
                recomputeMs: prepared.recomputeMs,
                fullPrefillEstimateMs: (loaded.prefillMsPerToken ?? (prefillMs / Math.max(1, freshTokens))) * promptTokens.length,
                modelLoadMs,
                retrievalMs,
                prefillMs,
                ttftMs,
                totalMs: finishedAt - startedAt,
                tokensPerSecond: decodeSeconds > 0 && result.completionTokens > 1 ? (result.completionTokens - 1) / decodeSeconds : 0
            };
            yield {type: "done", answer, citations, stats, cancelled: result.cancelled};
        } catch (error) {
            yield {type: "error", error: toErrorShape(error)};
        } finally {
            release?.();
            endForeground();
        }
    }

    public async close(): Promise<void> {
        if (this.closed)
            return;

        this.closed = true;
        this.maintenance.abort();
        await this.cacheWarmer.close();
        await this.watcher?.close();
        const release = await this.modelLock.lock();
        try {
            if (this.loaded != null)
                await this.unloadLoaded(this.loaded);

            this.loaded = null;
            await this.library.close();
            await (await this.embedderPromise?.catch(() => null))?.dispose();
            for (const vocab of this.vocabModels.values())
                await (await vocab.catch(() => null))?.dispose();

            const llama = this.llamaPromise != null ? await this.llamaPromise.catch(() => null) : null;
            await llama?.dispose();
        } finally {
            release();
        }
    }

    private llama(): Promise<Llama> {
        if (this.llamaPromise == null) {
            const starting = startLlama({gpu: this.gpu, threads: this.threads});
            this.llamaPromise = starting;
            // A failed start (a driver hiccup, say) is retried by the next question instead of sticking.
            starting.catch(() => {
                if (this.llamaPromise === starting)
                    this.llamaPromise = null;
            });
        }
        return this.llamaPromise;
    }

    /** Sets the sequence up for the requested strategy, or the nearest one this build can do (and says why). */
    private async preparePrompt(loaded: LoadedModel, prompt: BuiltPrompt, requested: Strategy, ratio: number): Promise<PreparedPrompt> {
        if (loaded.sequenceKvExact === false) {
            // The previous answer left blended (approximate) KV: exact prefix reuse must not build on it.
            await loaded.sequence.clearHistory();
            loaded.sequenceKvExact = true;
        }

        if (requested === "full")
            return prepareFull(loaded.sequence, prompt.tokens);

        let fallbackReason: string | undefined;
        if (requested !== "prefix") {
            if (!prompt.segments.some((segment) => segment.kind === "chunk"))
                fallbackReason = "no retrieved chunks to blend for this question";
            else {
                const blend = await this.blendContext(loaded);
                if (typeof blend === "string")
                    fallbackReason = blend;
                else {
                    loaded.sequenceKvExact = false;
                    return prepareBlend(blend, prompt, requested, ratio);
                }
            }
        }

        const prepared = await preparePrefix(loaded.sequence, prompt.tokens);
        if (fallbackReason != null)
            prepared.fallbackReason = `${requested} unavailable: ${fallbackReason}; used exact prefix reuse`;

        return prepared;
    }

    private chunkCache(): Promise<ChunkKvCache> {
        this.chunkCachePromise ??= ChunkKvCache.open({dataDir: this.dataDir, ramBudgetBytes: 1024 ** 3, diskBudgetBytes: 8 * 1024 ** 3});
        return this.chunkCachePromise;
    }

    public async cacheStats(): Promise<ChunkCacheStats> {
        return (await this.chunkCache()).stats();
    }

    /** Drops every chunk KV cache, in RAM and on disk, for every model. */
    public async clearCache(): Promise<void> {
        const cache = await this.chunkCache();
        cache.clearRam();
        await rm(path.join(this.dataDir, "kvcache"), {recursive: true, force: true});
    }

    /**
     * Computes the chunk KV caches of a folder (or the whole library) for the active model. Each chunk takes the
     * model lock on its own, so a question asked meanwhile waits for one chunk at most: warming yields to chat.
     */
    public async warmCache(folderPath: string | null, options: {signal?: AbortSignal, onProgress?: (done: number, total: number, computed: number) => void} = {}) {
        const modelId = this.resolveModelId(undefined, true)!;
        const store = await this.library.store();
        const folderId = folderPath != null ? folderIdFor(path.resolve(folderPath)) : null;
        const total = await store.countChunks(folderId ?? undefined);
        let done = 0;
        let computed = 0;
        for await (const batch of store.chunkTexts(folderId)) {
            for (const chunk of batch) {
                if (options.signal?.aborted)
                    return {done, total, computed, cancelled: true};

                const release = await this.modelLock.lock();
                try {
                    const loaded = await this.ensureLoaded(modelId);
                    const blend = await this.blendContext(loaded);
                    if (typeof blend === "string")
                        throw new EngineError("internal", `cannot build chunk KV caches here: ${blend}`);

                    const result = await chunkKv(blend, loaded.model.tokenize(chunk.text));
                    if (!result.hit)
                        computed++;
                } finally {
                    release();
                }
                done++;
                options.onProgress?.(done, total, computed);
            }
        }
        return {done, total, computed, cancelled: false};
    }

    /** Unloads a model, freeing its blend context's resident (GPU) KVs first. */
    private async unloadLoaded(loaded: LoadedModel): Promise<void> {
        const blend = await this.blendContexts.get(loaded)?.catch(() => null);
        if (blend != null && typeof blend !== "string")
            await closeResidentTier(blend);
        await unloadModel(loaded);
    }

    /** What the blend path needs for this model, or why it cannot run here. */
    private blendContext(loaded: LoadedModel): Promise<BlendContext | string> {
        let found = this.blendContexts.get(loaded);
        if (found == null) {
            found = (async () => openBlendContext({
                llama: await this.llama(), model: loaded.model, context: loaded.context, sequence: loaded.sequence,
                modelPath: loaded.info.path, cache: await this.chunkCache(), threads: this.threads,
                ...(this.residentKvBytes != null ? {residentBudgetBytes: this.residentKvBytes} : {})
            }))();
            this.blendContexts.set(loaded, found);
        }
        return found;
    }

    /**
     * Chunks are measured with the active model's own tokenizer, loaded vocabulary-only so ingestion never
     * competes with a chat for the loaded model.
     */
    private async ingestTokenizer(): Promise<Tokenizer> {
        const modelId = this.resolveModelId(undefined, false);
        if (modelId == null)
            return estimateTokenizer;

        const info = this.registry.require(modelId);
        let vocab = this.vocabModels.get(info.path);
        if (vocab == null) {
            vocab = this.llama().then((llama) => llama.loadModel({modelPath: info.path, vocabOnly: true}));
            this.vocabModels.set(info.path, vocab);
            vocab.catch(() => this.vocabModels.delete(info.path));
        }

        const model = await vocab;
        return {countTokens: (text) => model.tokenize(text).length, kind: "model"};
    }

    private async embedder(): Promise<Embedder | null> {
        const id = this.settings.embeddingModelId;
        const info = id != null ? this.registry.get(id) : undefined;
        if (info == null)
            return null;

        if (this.embedderPromise == null) {
            const opening = this.llama().then((llama) => openEmbedder(llama, info, this.threads));
            this.embedderPromise = opening;
            opening.catch(() => {
                if (this.embedderPromise === opening)
                    this.embedderPromise = null;
            });
        }
        return this.embedderPromise;
    }

    private resolveModelId(requested: string | undefined, required: boolean): string | null {
        if (requested != null)
            return this.registry.require(requested).id;

        const active = this.settings.activeModelId;
        if (active != null && this.registry.get(active) != null)
            return active;

        const models = this.registry.list();
        if (models.length > 0)
            return models[0]!.id;

        if (required)
            throw new EngineError("no_model", "no model is set up yet: add a GGUF file with `weft models add PATH` or pick one in the app");

        return null;
    }

    /** Callers hold modelLock. */
    private async ensureLoaded(modelId: string): Promise<LoadedModel> {
        if (this.loaded?.info.id === modelId)
            return this.loaded;

        if (this.loaded != null) {
            await this.unloadLoaded(this.loaded);
            this.loaded = null;
        }

        const llama = await this.llama();
        this.loaded = await loadModel(llama, this.registry.require(modelId), {
            contextSize: this.settings.contextSize,
            threads: this.threads
        });
        return this.loaded;
    }

    private async updateSettings(patch: Partial<Settings>): Promise<void> {
        this.settings = {...this.settings, ...patch};
        await saveSettings(this.dataDir, this.settings);
    }
}
