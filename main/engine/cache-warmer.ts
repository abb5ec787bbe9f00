import type {CacheWarmStatus} from "../contract/index.js";

/** Thrown by a host when no chunk cache can be computed for this model here (the pass stops: state "unavailable"). */
export class WarmUnavailable extends Error {
    public constructor(message: string, options?: {cause?: unknown}) {
        super(message, options);
        this.name = "WarmUnavailable";
    }
}

/** "yielded": a question came first and nothing was done; the same chunk is tried again once questions are done. */
export type WarmChunkOutcome = "cached" | "computed" | "yielded";

/** A library chunk to warm: a chunk's KV is computed after its document's label (prompt.ts, chunkLead). */
export type WarmChunk = {
    path: string, text: string,
    /**
     * "plain": its KV after a BOS, for any place in a prompt; "lead": its lead version, for when it is a prompt's first
     * source (ChunkKvSource.leadKv). A pass lists every plain version before any lead version.
     */
    version: "plain" | "lead"
};

/**
 * What the warmer needs from the engine; the engine implements it around its model lock and chunk cache. The warmer
 * only passes the listed chunks back (`C`: the engine's {@link WarmChunk}).
 */
export interface CacheWarmHost<C = WarmChunk> {
    /** The model to compute caches for, or null when none is set up. */
    activeModelId(): string | null;
    /** Every chunk in the library: its document's path and its text. */
    listChunks(): Promise<C[]>;
    /** Resolves once no question (or ingest) is waiting or running, or when `signal` aborts. */
    whenForegroundIdle(signal: AbortSignal): Promise<void>;
    /**
     * Makes sure one chunk's KV is cached for `modelId`, taking the model lock for this one chunk. Throws
     * {@link WarmUnavailable} when no chunk can be computed here; any other error is this chunk's failure.
     */
    warmChunk(modelId: string, chunk: C): Promise<WarmChunkOutcome>;
    /** The chunk cache's disk evictions so far: once warming makes it evict, the budget is full and warming stops. */
    diskEvictions(): Promise<number>;
}

export type CacheWarmerOptions = {
    log?: (line: string) => void;
    /** Chunk failures logged one by one per pass; the rest are counted (and summed up at the end of the pass). */
    loggedFailures?: number;
};

type Phase = "idle" | "running" | "unavailable";

/**
 * Computes the chunk KV caches of the whole library for the active model in the background, one chunk at a
 * time and at the lowest priority: before each chunk it waits until no question is waiting or running, and a
 * question that arrives while it waits for the model lock makes it give the lock back untouched.
 *
 * One pass runs at a time. {@link trigger} (after an ingest, a model change) starts a pass, or restarts the running
 * one after its current chunk; chunks cached already cost a look-up only. {@link pause} stops after the current
 * chunk until {@link resume}. Nothing a pass meets is thrown: a failed chunk is counted and logged, a library
 * that cannot be listed or a build that cannot blend ends the pass with a reason in the status.
 */
export class CacheWarmer<C = WarmChunk> {
    private phase: Phase = "idle";
    private progress = {modelId: null as string | null, done: 0, total: 0, computed: 0, failed: 0, reason: undefined as string | undefined};
    private enabled = false;
    private paused = false;
    /** A (new) pass is asked for; a running pass sees it at its next chunk and gives way. */
    private wanted = false;
    private loop: Promise<void> | null = null;
    private readonly stopping = new AbortController();
    private readonly listeners = new Set<() => void>();
    private wakers: (() => void)[] = [];
    private log: (line: string) => void;
    private readonly loggedFailures: number;

    public constructor(private readonly host: CacheWarmHost<C>, options: CacheWarmerOptions = {}) {
        this.log = options.log ?? (() => {});
        this.loggedFailures = options.loggedFailures ?? 3;
    }

    public status(): CacheWarmStatus {
        const {reason, ...counts} = this.progress;
        const state = this.paused && this.phase !== "unavailable" ? "paused" : this.phase;
        return {state, ...counts, ...(reason != null ? {reason} : {})};
    }

    /** Calls `listener` after every change of {@link status}; returns the unsubscribe function. */
    public subscribe(listener: () => void): () => void {
        this.listeners.add(listener);
        return () => this.listeners.delete(listener);
    }

    /** Turns triggers on (long-running hosts: the app, `weft serve`) and starts a pass over the library. */
    public start(log?: (line: string) => void): void {
        if (log != null)
            this.log = log;

        this.enabled = true;
        this.trigger();
    }

    /** Asks for a pass over the whole library: starts one, or restarts the running one after its current chunk. */
    public trigger(): void {
        if (!this.enabled || this.stopping.signal.aborted)
            return;

        this.wanted = true;
        this.wake();
        this.ensureLoop();
    }

    /** Restarts the running (or paused) pass, so it sees a changed library; does nothing when no pass is under way. */
    public restartIfActive(): void {
        if (this.loop != null)
            this.trigger();
    }

    public pause(): CacheWarmStatus {
        if (!this.paused) {
            this.paused = true;
            this.changed();
        }
        return this.status();
    }

    public resume(): CacheWarmStatus {
        if (this.paused) {
            this.paused = false;
            this.wake();
            this.changed();
        }
        return this.status();
    }

    /** Stops for good; resolves once the chunk in progress (if any) is finished. */
    public async close(): Promise<void> {
        this.stopping.abort();
        this.wake();
        await this.loop;
        if (this.phase === "running")
            this.finish("idle", "stopped: the engine closed");
        else
            this.changed();
    }

    private get stopped(): boolean {
        return this.stopping.signal.aborted;
    }

    private ensureLoop(): void {
        if (this.loop != null || this.stopped)
            return;

        this.loop = this.run().finally(() => {
            this.loop = null;
            // A trigger that came while the loop was winding down.
            if (this.wanted)
                this.ensureLoop();
        });
    }

    private async run(): Promise<void> {
        while (this.wanted && !this.stopped) {
            this.wanted = false;
            try {
                await this.pass();
            } catch (error) {
                // pass() handles what it expects; this keeps a bug in it from killing the loop (or the engine).
                this.log(`chunk cache warming failed: ${(error as Error).message}`);
                this.finish("idle", `warming failed: ${(error as Error).message}`);
            }
        }
    }

    /** Waits while paused; false when the pass should end (stopped, or a new pass was asked for meanwhile). */
    private async untilUnpaused(): Promise<boolean> {
        while (this.paused && !this.stopped && !this.wanted)
            await new Promise<void>((resolve) => this.wakers.push(resolve));

        return !this.stopped && !this.wanted;
    }

    private async pass(): Promise<void> {
        // Not awaiting when there is nothing to wait for makes the status say "running" as soon as a pass is asked for.
        if (this.paused && !await this.untilUnpaused())
            return;

        const modelId = this.host.activeModelId();
        this.progress = {modelId, done: 0, total: 0, computed: 0, failed: 0, reason: undefined};
        if (modelId == null) {
            this.finish("idle", "no model is set up");
            return;
        }

        this.phase = "running";
        this.changed();
        let chunks: C[];
        try {
            chunks = await this.host.listChunks();
        } catch (error) {
            this.log(`chunk cache warming: cannot list the library: ${(error as Error).message}`);
            this.finish("idle", `cannot list the library: ${(error as Error).message}`);
            return;
        }

        this.progress.total = chunks.length;
        this.changed();
        const evictionsAtStart = chunks.length > 0 ? await this.host.diskEvictions() : 0;
        let index = 0;
        while (index < chunks.length) {
            if (!await this.untilUnpaused())
                return;

            await this.host.whenForegroundIdle(this.stopping.signal);
            if (this.stopped || this.wanted || this.paused)
                continue;

            let outcome: WarmChunkOutcome;
            try {
                outcome = await this.host.warmChunk(modelId, chunks[index]!);
            } catch (error) {
                if (error instanceof WarmUnavailable) {
                    this.finish("unavailable", error.message);
                    return;
                }

                this.progress.failed++;
                if (this.progress.failed <= this.loggedFailures)
                    this.log(`chunk cache warming: chunk ${index + 1} of ${chunks.length} failed: ${(error as Error).message}`);

                outcome = "cached";
            }
            if (outcome === "yielded")
                continue;

            if (outcome === "computed")
                this.progress.computed++;

            this.progress.done++;
            index++;
            this.changed();
            if (outcome === "computed" && await this.host.diskEvictions() > evictionsAtStart) {
                this.finish("idle", "the chunk cache's disk budget is full; the remaining chunks are computed when a question needs them");
                return;
            }
        }

        if (this.progress.failed > this.loggedFailures)
            this.log(`chunk cache warming: ${this.progress.failed} of ${chunks.length} chunks failed`);

        this.finish("idle", this.progress.failed > 0 ? `${this.progress.failed} chunks failed` : undefined);
    }

    private finish(phase: Phase, reason: string | undefined): void {
        this.phase = phase;
        this.progress.reason = reason;
        this.changed();
    }

    private wake(): void {
        const wakers = this.wakers;
        this.wakers = [];
        for (const resolve of wakers)
            resolve();
    }

    private changed(): void {
        for (const listener of this.listeners) {
            try {
                listener();
            } catch {
                // A listener's failure is its own.
            }
        }
    }
}
