import {mkdir} from "node:fs/promises";
import {
    type CacheWarmEvent, type CacheWarmStatus, type ChatEvent, type ChatRequestParsed, type EngineApi, EngineError, type EngineStatus,
    type FolderInfo, type IngestEvent, type ListedModel, type ModelInfo
} from "../contract/index.js";
import {startupThreads} from "./user-settings.js";
import {AppEndpoints} from "./app-endpoints.js";
import packageJson from "../../package.json" with {type: "json"};
import {CacheWarming, type WarmCacheResult} from "./cache-warming.js";
import {ChatService} from "./chat/chat-service.js";
import {downloadModel, type DownloadProgress} from "./download.js";
import {Foreground} from "./foreground.js";
import {estimateTokenizer, type Tokenizer} from "./library/library.js";
import {LibraryHost} from "./library-host.js";
import {backendOf, type GpuChoice} from "./llama-runtime.js";
import {ModelBlendSupportCache} from "./model-blend-support.js";
import {type CacheStats, ModelHost} from "./model-host.js";
import {DataDirLock, type LockWait} from "./data-lock.js";
import {ModelRegistry} from "./model-registry.js";
import {loadSettings, resolveThreads, saveSettings, type Settings} from "./settings.js";

export type {CacheStats} from "./model-host.js";

export type EngineOptions = {
    dataDir: string;
    /** Explicit thread count; WEFT_THREADS or the core count when absent. */
    threads?: number;
    gpu?: GpuChoice;
    /** Byte budget of the GPU-resident tier of chunk KVs (default: a share of free VRAM; none on CPU; tests set it on CPU). */
    residentKvBytes?: number;
    /** Level of the KV codec for chunk caches on disk; null stores them as raw f16 (default: level 2, see model-host.ts). */
    kvCodecLevel?: number | null;
    /** Waiting for another process that is writing this data folder: how long, and what to tell the user. */
    lockWait?: LockWait;
};

/**
 * The headless engine: a facade over the model host (loading, locking), the chat service, the library host and cache
 * warming. Every transport (CLI, serve socket, Electron IPC) drives this one object through the contract's EngineApi.
 */
export class Engine extends AppEndpoints implements EngineApi {
    private closed = false;
    private readonly foreground = new Foreground();
    private readonly blendSupport = new ModelBlendSupportCache();
    protected readonly host: ModelHost;
    private readonly libraryHost: LibraryHost;
    private readonly warming: CacheWarming;
    private readonly chatService: ChatService;
    private readonly lockWait: LockWait;
    /** The settings writes of this process, in order (see updateSettings). */
    private settingsWrites: Promise<void> = Promise.resolve();

    private constructor(dataDir: string, threads: number, options: EngineOptions, protected readonly registry: ModelRegistry, protected settings: Settings) {
        super(dataDir, threads, settings);
        this.lockWait = options.lockWait ?? {};
        this.host = new ModelHost({
            dataDir, threads, gpu: options.gpu ?? "auto", modelInfo: (id) => this.registry.require(id), contextSize: () => this.settings.contextSize,
            ...residentBudget(options.residentKvBytes ?? settings.residentCacheBytes ?? undefined),
            ...(options.kvCodecLevel !== undefined ? {kvCodecLevel: options.kvCodecLevel} : {}),
            ramCacheBytes: settings.ramCacheBytes, diskCacheBytes: settings.diskCacheBytes, ...(settings.gpuLayers != null ? {gpuLayers: settings.gpuLayers} : {})
        });
        this.libraryHost = new LibraryHost(dataDir, {
            foreground: this.foreground, tokenizer: () => this.ingestTokenizer(), embedder: () => this.embedder(), changed: () => this.warming.trigger(),
            chunkTokens: () => this.settings.chunkTokens,
            folderOptions: () => ({followLinksOutside: this.settings.followLinksOutsideFolder, lockWait: this.lockWait})
        });
        this.warming = new CacheWarming({
            host: this.host, library: this.libraryHost, foreground: this.foreground, isClosed: () => this.closed,
            activeModelId: () => this.activeModelId(), requireModelId: () => this.requireModelId()
        });
        this.chatService = new ChatService({
            host: this.host, library: this.libraryHost.library, foreground: this.foreground, requireModelId: (id) => this.requireModelId(id)
        });
    }

    public static async open(options: EngineOptions): Promise<Engine> {
        await mkdir(options.dataDir, {recursive: true});
        const [registry, settings] = await Promise.all([ModelRegistry.open(options.dataDir, options.lockWait), loadSettings(options.dataDir)]);
        return new Engine(options.dataDir, resolveThreads(startupThreads(options.threads, settings)), options, registry, settings);
    }

    /** Starts llama.cpp and loads the active model ahead of the first question (serve and the app call this). */
    public async warmUp(): Promise<void> {
        await this.host.llama();
        const modelId = this.activeModelId();
        if (modelId != null)
            await this.host.withLock(() => this.host.ensureLoaded(modelId));
    }

    public async getStatus(): Promise<EngineStatus> {
        const llama = await this.host.startedLlama();
        const embeddingModelId = this.settings.embeddingModelId;
        return {
            version: packageJson.version,
            backend: llama != null ? backendOf(llama) : null,
            threads: this.threads,
            dataDir: this.dataDir,
            activeModelId: this.activeModelId(),
            embeddingModelId: embeddingModelId != null && this.registry.get(embeddingModelId) != null ? embeddingModelId : null,
            loadedModelId: this.host.loadedModelId,
            cacheWarm: this.warming.status()
        };
    }

    /** The registered models, each with whether it can blend (and why not). */
    public async listModels(): Promise<ListedModel[]> {
        // Another process (the CLI beside serve or the app) may have changed the registry.
        await this.registry.refresh();
        return Promise.all(this.registry.list().map(async (info) => ({...info, blend: await this.blendSupport.of(info)})));
    }

    public async addModel(input: {path: string}): Promise<ModelInfo> {
        return this.changingActiveModel(async () => {
            const info = await this.registry.add(input.path);
            if (this.settings.activeModelId == null || this.registry.get(this.settings.activeModelId) == null)
                await this.updateSettings({activeModelId: info.id});
            return info;
        });
    }

    /** Downloads a model into the data dir (resuming a partial download) and registers it. */
    public async pullModel(uri: string, options: {onProgress?: (progress: DownloadProgress) => void, signal?: AbortSignal} = {}): Promise<ModelInfo> {
        return this.addModel({path: await downloadModel(uri, this.dataDir, options)});
    }

    public async removeModel(input: {id: string}): Promise<{removed: boolean}> {
        return this.changingActiveModel(async () => {
            await this.host.unloadIfLoaded(input.id);
            const removed = await this.registry.remove(input.id);
            if (removed && this.settings.activeModelId === input.id)
                await this.updateSettings({activeModelId: this.registry.list()[0]?.id ?? null});
            return {removed};
        });
    }

    public async selectModel(input: {id: string}): Promise<ModelInfo> {
        const info = this.registry.require(input.id);
        // The new model's chunk caches (another fingerprint) are computed in the background.
        return this.changingActiveModel(async () => {
            await this.updateSettings({activeModelId: info.id});
            return info;
        });
    }

    /** Choosing another embedding model re-embeds every folder at its next ingest (its own vectors table). */
    public async setEmbeddingModel(input: {id: string | null}): Promise<EngineStatus> {
        if (input.id != null)
            this.registry.require(input.id);

        if (input.id !== this.settings.embeddingModelId) {
            await this.host.dropEmbedder();
            await this.updateSettings({embeddingModelId: input.id});
        }
        return this.getStatus();
    }

    public async listFolders(): Promise<FolderInfo[]> {
        return this.libraryHost.listFolders();
    }

    public async removeFolder(input: {id: string}): Promise<{removed: boolean}> {
        const removed = await this.libraryHost.removeFolder(input.id);
        // A pass under way would otherwise go on computing the removed folder's chunks.
        if (removed)
            this.warming.restartIfActive();
        return {removed};
    }

    public ingestFolder(input: {path: string}, signal: AbortSignal, onlyPaths?: string[]): AsyncGenerator<IngestEvent> {
        return this.libraryHost.ingestFolder(input.path, signal, onlyPaths);
    }

    /** For long-running hosts (serve, the app): keeps every folder's index current (see LibraryHost.maintain). */
    public maintainLibrary(log: (line: string) => void): Promise<void> {
        return this.libraryHost.maintain(log);
    }

    /** For long-running hosts: chunk KV caches computed in the background from now on (see CacheWarming). */
    public startCacheWarming(log?: (line: string) => void): void {
        if (!this.closed)
            this.warming.start(log);
    }

    public async pauseCacheWarm(): Promise<CacheWarmStatus> {
        return this.warming.pause();
    }

    public async resumeCacheWarm(): Promise<CacheWarmStatus> {
        return this.warming.resume();
    }

    public watchCacheWarm(_input: Record<string, never>, signal: AbortSignal): AsyncGenerator<CacheWarmEvent> {
        return this.warming.watch(signal);
    }

    public chat(request: ChatRequestParsed, signal: AbortSignal): AsyncGenerator<ChatEvent> {
        return this.chatService.chat(request, signal);
    }

    public cacheStats(): Promise<CacheStats> {
        return this.host.cacheStats();
    }

    /** Drops every chunk KV cache, in RAM and on disk, for every model. */
    public clearCache(): Promise<void> {
        return this.host.clearChunkCache();
    }

    /** Computes the chunk KV caches of a folder (or the whole library) for the active model (see CacheWarming.warmCache). */
    public warmCache(folderPath: string | null, options: {signal?: AbortSignal, onProgress?: (done: number, total: number, computed: number) => void} = {}): Promise<WarmCacheResult> {
        return this.warming.warmCache(folderPath, options);
    }

    public async close(): Promise<void> {
        if (this.closed)
            return;

        this.closed = true;
        await this.libraryHost.stop();
        await this.warming.close();
        await this.host.withLock(() => this.libraryHost.close());
        await this.host.close();
    }

    /** Chunks are measured with the active model's tokenizer, loaded vocabulary-only (never competing with a chat). */
    private async ingestTokenizer(): Promise<Tokenizer> {
        const modelId = this.activeModelId();
        if (modelId == null)
            return estimateTokenizer;
        const model = await this.host.vocabModel(this.registry.require(modelId));
        return {countTokens: (text) => model.tokenize(text).length, kind: "model"};
    }

    private async embedder() {
        const id = this.settings.embeddingModelId;
        const info = id != null ? this.registry.get(id) : undefined;
        return info == null ? null : this.host.embedder(info);
    }

    /** The model questions go to: the selected one if it is still registered, else the first registered, else none. */
    private activeModelId(): string | null {
        const active = this.settings.activeModelId;
        if (active != null && this.registry.get(active) != null)
            return active;
        return this.registry.list()[0]?.id ?? null;
    }

    /** `requested` if registered (else throws), else the active model; throws `no_model` when none is set up. */
    private requireModelId(requested?: string): string {
        if (requested != null)
            return this.registry.require(requested).id;
        const active = this.activeModelId();
        if (active == null)
            throw new EngineError("no_model", "no model is set up yet: add a GGUF file with `weft models add PATH` or pick one in the app");
        return active;
    }

    /** Runs a change to the registry or settings; when the active model changed, background warming starts over. */
    private async changingActiveModel<T>(change: () => Promise<T>): Promise<T> {
        const before = this.activeModelId();
        const result = await change();
        if (this.activeModelId() !== before)
            this.warming.trigger();
        return result;
    }

    /**
     * Read-modify-write under the data folder's lock, so a change another process saved meanwhile is kept, and one
     * change after another in this process: the lock is shared within a process, and two changes read together (a
     * theme and a strategy picked in quick succession) would each write the file back without the other's field.
     */
    protected async updateSettings(patch: Partial<Settings>): Promise<void> {
        const write = this.settingsWrites.then(() => DataDirLock.for(this.dataDir).hold(async () => {
            this.settings = {...(await loadSettings(this.dataDir)), ...patch};
            await saveSettings(this.dataDir, this.settings);
        }, this.lockWait));
        this.settingsWrites = write.catch(() => undefined);
        await write;
    }
}

function residentBudget(bytes: number | undefined): {residentKvBytes?: number} {
    return bytes != null ? {residentKvBytes: bytes} : {};
}
