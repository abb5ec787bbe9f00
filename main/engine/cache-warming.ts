import path from "node:path";
import {setTimeout as delay} from "node:timers/promises";
import {type CacheWarmEvent, type CacheWarmStatus, EngineError, toErrorShape} from "../contract/index.js";
import {CacheWarmer, type WarmChunk, type WarmChunkOutcome, WarmUnavailable} from "./cache-warmer.js";
import type {Foreground} from "./foreground.js";
import {folderIdFor} from "./library/store.js";
import type {LibraryHost} from "./library-host.js";
import type {ModelHost} from "./model-host.js";
import {firstSourceLead} from "./prompt.js";
import type {BlendSession} from "./blend/blend.js";
import type {LoadedModel} from "./llama-runtime.js";
import type {Token} from "node-llama-cpp";

/** Whether the disk tier has room for one more file of its average size without evicting. */
export function diskHasRoom(disk: {entries: number, bytes: number, budgetBytes: number}): boolean {
    return disk.budgetBytes > 0 && disk.budgetBytes - disk.bytes >= (disk.entries > 0 ? disk.bytes / disk.entries : 0);
}

/** The shortest gap between two `watchCacheWarm` events. */
const cacheWarmEventMs = 150;

export type WarmCacheResult = {done: number, total: number, computed: number, cancelled: boolean};

/**
 * Chunk KV caches computed ahead of questions: in the background for the whole library (the warmer, which gives way to
 * questions and ingests), or on request for one folder (`weft cache warm`).
 */
export class CacheWarming {
    private readonly warmer: CacheWarmer;

    public constructor(private readonly deps: {
        host: ModelHost, library: LibraryHost, foreground: Foreground, isClosed(): boolean,
        activeModelId(): string | null, requireModelId(): string
    }) {
        this.warmer = new CacheWarmer({
            activeModelId: () => deps.activeModelId(),
            // every chunk's plain version, then every lead version
            listChunks: async () => {
                const chunks = await deps.library.listChunkTexts();
                return [...chunks.map((chunk) => ({...chunk, version: "plain" as const})), ...chunks.map((chunk) => ({...chunk, version: "lead" as const}))];
            },
            whenForegroundIdle: (signal) => deps.foreground.whenIdle(signal),
            warmChunk: (modelId, chunk) => this.warmChunkInBackground(modelId, chunk),
            diskEvictions: async () => (await deps.host.chunkCache()).stats().disk.evictions
        });
    }

    public status(): CacheWarmStatus {
        return this.warmer.status();
    }

    public trigger(): void {
        this.warmer.trigger();
    }

    public restartIfActive(): void {
        this.warmer.restartIfActive();
    }

    public start(log?: (line: string) => void): void {
        this.warmer.start(log);
    }

    public async pause(): Promise<CacheWarmStatus> {
        return this.warmer.pause();
    }

    public async resume(): Promise<CacheWarmStatus> {
        return this.warmer.resume();
    }

    public close(): Promise<void> {
        return this.warmer.close();
    }

    /**
     * One chunk version of background warming, under the model lock, which it gives straight back when a question
     * waits. A lead version the disk has no room left for is left out: a question computes it when it needs it, in
     * place of the whole recompute it saves, where a plain version it lacks costs it a computation.
     */
    private async warmChunkInBackground(modelId: string, {path: chunkPath, text, version}: WarmChunk): Promise<WarmChunkOutcome> {
        const {host} = this.deps;
        return host.withLock(async () => {
            if (this.deps.isClosed() || this.deps.foreground.busy)
                return "yielded";

            let blend;
            let loaded;
            try {
                loaded = await host.ensureLoaded(modelId);
                blend = await host.blendSession(loaded);
            } catch (error) {
                throw new WarmUnavailable(`cannot load the model: ${toErrorShape(error).message}`, {cause: error});
            }
            if (!blend.available)
                throw new WarmUnavailable(blend.reason);

            const tokens = loaded.model.tokenize(text);
            // An empty chunk has no KV; a chunk whose file is there needs no read (a full pass stays cheap), unless the
            // resident tier has room for it.
            if (tokens.length === 0)
                return "cached";
            if (version === "lead")
                return this.warmLead(loaded, blend.value, chunkPath, tokens);
            const loadedKv = await blend.value.chunkCachedOnDisk(tokens) ? null : await blend.value.chunkKv(tokens);
            // On a GPU, also into the resident tier while it has free room (a no-op without one).
            await blend.value.warmResidentChunk(tokens, loadedKv?.body);
            return loadedKv == null || loadedKv.hit ? "cached" : "computed";
        });
    }

    /**
     * A chunk's lead version (for when it is a prompt's first source), to disk only, so the RAM tier stays with the plain
     * versions every question reads, and only while the disk has room without evicting. Callers hold the model lock.
     */
    private async warmLead(loaded: LoadedModel, blend: BlendSession, chunkPath: string, tokens: Token[]): Promise<"cached" | "computed"> {
        const lead = firstSourceLead(loaded.model, chunkPath, loaded.info.hasChatTemplate);
        if (blend.leadCached(lead, tokens) || !diskHasRoom((await this.deps.host.chunkCache()).stats().disk))
            return "cached";
        return (await blend.leadKv(lead, tokens, {diskOnly: true})).hit ? "cached" : "computed";
    }

    /**
     * Computes the chunk KV caches of a folder (or the whole library) for the active model. Each chunk takes the
     * model lock on its own, so a question asked meanwhile waits for one chunk at most: warming yields to chat.
     */
    public async warmCache(folderPath: string | null, options: {signal?: AbortSignal, onProgress?: (done: number, total: number, computed: number) => void} = {}): Promise<WarmCacheResult> {
        const {host} = this.deps;
        const modelId = this.deps.requireModelId();
        const store = await this.deps.library.library.store();
        const folderId = folderPath != null ? folderIdFor(path.resolve(folderPath)) : null;
        const total = await store.countChunks(folderId ?? undefined);
        let done = 0;
        let computed = 0;
        for await (const batch of store.chunkTexts(folderId)) {
            for (const chunk of batch) {
                if (options.signal?.aborted)
                    return {done, total, computed, cancelled: true};

                await host.withLock(async () => {
                    const loaded = await host.ensureLoaded(modelId);
                    const blend = await host.blendSession(loaded);
                    if (!blend.available)
                        throw new EngineError("internal", `cannot build chunk KV caches here: ${blend.reason}`);

                    const tokens = loaded.model.tokenize(chunk.text);
                    const plain = await blend.value.chunkKv(tokens);
                    const lead = tokens.length > 0 ? await this.warmLead(loaded, blend.value, chunk.path, tokens) : "cached";
                    if (!plain.hit || lead === "computed")
                        computed++;
                });
                done++;
                options.onProgress?.(done, total, computed);
            }
        }
        return {done, total, computed, cancelled: false};
    }

    /** The warming status now, then after every change (at most every {@link cacheWarmEventMs}), until cancelled. */
    public async* watch(signal: AbortSignal): AsyncGenerator<CacheWarmEvent> {
        let changed = true;
        let wake: (() => void) | null = null;
        const unsubscribe = this.warmer.subscribe(() => {
            changed = true;
            wake?.();
        });
        const onAbort = () => wake?.();
        signal.addEventListener("abort", onAbort);
        try {
            while (!signal.aborted && !this.deps.isClosed()) {
                if (!changed) {
                    await new Promise<void>((resolve) => {
                        wake = resolve;
                    });
                    wake = null;
                    continue;
                }

                changed = false;
                yield {type: "status", status: this.warmer.status()};
                // Hits go by fast: one event per interval carries the latest counts.
                await delay(cacheWarmEventMs, undefined, {signal}).catch(() => {});
            }
            yield {type: "done"};
        } finally {
            unsubscribe();
            signal.removeEventListener("abort", onAbort);
        }
    }
}
