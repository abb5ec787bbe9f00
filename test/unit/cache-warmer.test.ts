// The background chunk-cache warmer's scheduling (one chunk at a time, giving way to questions, pause, restart,
// failures) against a scripted host; the engine's own host is covered by test/model/cache-warming.test.ts.
import assert from "node:assert/strict";
import {describe, it} from "node:test";
import {setImmediate as nextTurn} from "node:timers/promises";
import {CacheWarmStatus} from "../../main/contract/index.js";
import {CacheWarmer, type CacheWarmHost, type WarmChunkOutcome, WarmUnavailable} from "../../main/engine/cache-warmer.js";

type Gate = {promise: Promise<void>, open(): void};

function gate(): Gate {
    let open!: () => void;
    const promise = new Promise<void>((resolve) => {
        open = resolve;
    });
    return {promise, open};
}

/** A library of chunks named by their text; `cached` ones are there already, `failing` ones throw. */
class ScriptedHost implements CacheWarmHost<string> {
    public modelId: string | null = "model-a";
    public chunks: string[];
    public cached = new Set<string>();
    public failing = new Set<string>();
    public unavailable: string | null = null;
    public evictions = 0;
    /** Chunks warmChunk was called with, in order (yielded calls included). */
    public calls: string[] = [];
    public inFlight = 0;
    public maxInFlight = 0;
    public foreground = 0;
    public listings = 0;
    /** When set, each warmChunk call waits for this gate (replaced by the test between chunks). */
    public hold: Gate | null = null;
    private idleWaiters: (() => void)[] = [];

    public constructor(chunks: string[]) {
        this.chunks = chunks;
    }

    public activeModelId(): string | null {
        return this.modelId;
    }

    public async listChunks(): Promise<string[]> {
        this.listings++;
        return [...this.chunks];
    }

    public whenForegroundIdle(signal: AbortSignal): Promise<void> {
        if (this.foreground === 0 || signal.aborted)
            return Promise.resolve();

        return new Promise((resolve) => {
            this.idleWaiters.push(resolve);
            signal.addEventListener("abort", () => resolve(), {once: true});
        });
    }

    public setForeground(count: number): void {
        this.foreground = count;
        if (count === 0) {
            const waiters = this.idleWaiters;
            this.idleWaiters = [];
            waiters.forEach((resolve) => resolve());
        }
    }

    public async warmChunk(_modelId: string, text: string): Promise<WarmChunkOutcome> {
        this.calls.push(text);
        this.inFlight++;
        this.maxInFlight = Math.max(this.maxInFlight, this.inFlight);
        try {
            await this.hold?.promise;
            if (this.foreground > 0)
                return "yielded";
            if (this.unavailable != null)
                throw new WarmUnavailable(this.unavailable);
            if (this.failing.has(text))
                throw new Error(`cannot evaluate ${text}`);
            if (this.cached.has(text))
                return "cached";

            this.cached.add(text);
            return "computed";
        } finally {
            this.inFlight--;
        }
    }

    public async diskEvictions(): Promise<number> {
        return this.evictions;
    }
}

/** Resolves once the warmer's status satisfies `predicate` (checked on every change). */
function until(warmer: CacheWarmer<string>, predicate: (status: CacheWarmStatus) => boolean): Promise<CacheWarmStatus> {
    return new Promise((resolve) => {
        const check = () => {
            const status = warmer.status();
            if (predicate(status)) {
                unsubscribe();
                resolve(status);
            }
        };
        const unsubscribe = warmer.subscribe(check);
        check();
    });
}

/** Resolves once `condition` holds, checking on every turn of the event loop. */
async function eventually(condition: () => boolean, what: string): Promise<void> {
    for (let turn = 0; turn < 10_000; turn++) {
        if (condition())
            return;
        await nextTurn();
    }
    assert.fail(`never happened: ${what}`);
}

const finished = (status: CacheWarmStatus) => status.state !== "running" && status.state !== "paused";
const chunks = (n: number) => Array.from({length: n}, (_, i) => `chunk-${i + 1}`);

describe("CacheWarmer", {timeout: 20_000}, () => {
    it("does nothing until started, then warms every chunk once and reports a valid status", async () => {
        const host = new ScriptedHost(chunks(5));
        host.cached.add("chunk-2");
        const warmer = new CacheWarmer(host);
        const seen: CacheWarmStatus[] = [];
        warmer.subscribe(() => seen.push(warmer.status()));

        warmer.trigger();
        await nextTurn();
        assert.equal(host.listings, 0, "a trigger before start() is ignored");
        assert.equal(warmer.status().state, "idle");

        warmer.start();
        const status = await until(warmer, (s) => s.state === "idle" && s.total === 5);
        assert.deepEqual(status, {state: "idle", modelId: "model-a", done: 5, total: 5, computed: 4, failed: 0});
        assert.deepEqual(host.calls, chunks(5));
        assert.equal(host.maxInFlight, 1);
        for (const entry of seen)
            CacheWarmStatus.parse(entry);
        assert.ok(seen.some((entry) => entry.state === "running" && entry.done === 2 && entry.total === 5));
        await warmer.close();
    });

    it("waits while questions run and retries a chunk it gave way on", async () => {
        const host = new ScriptedHost(chunks(3));
        const warmer = new CacheWarmer(host);
        host.setForeground(1);
        warmer.start();
        await until(warmer, (s) => s.state === "running" && s.total === 3);
        await nextTurn();
        assert.deepEqual(host.calls, [], "nothing is warmed while a question runs");

        // A question arrives while the warmer waits for the model lock: it gives the chunk back and retries it.
        host.setForeground(0);
        host.hold = gate();
        await eventually(() => host.calls.length === 1, "the first chunk started");
        host.foreground = 1;
        const held = host.hold;
        host.hold = null;
        held.open();
        await nextTurn();
        await nextTurn();
        assert.equal(warmer.status().done, 0);
        host.setForeground(0);
        const status = await until(warmer, finished);
        assert.equal(status.done, 3);
        assert.equal(status.computed, 3);
        assert.deepEqual(host.calls, ["chunk-1", "chunk-1", "chunk-2", "chunk-3"]);
        await warmer.close();
    });

    it("pauses after the chunk in progress and resumes where it stopped", async () => {
        const host = new ScriptedHost(chunks(4));
        const warmer = new CacheWarmer(host);
        host.hold = gate();
        warmer.start();
        await eventually(() => host.calls.length === 1, "the first chunk started");

        assert.equal(warmer.pause().state, "paused");
        const first = host.hold;
        host.hold = null;
        first.open();
        await until(warmer, (s) => s.done === 1);
        for (let i = 0; i < 5; i++)
            await nextTurn();
        assert.deepEqual(host.calls, ["chunk-1"], "no chunk starts while paused");
        assert.equal(warmer.status().state, "paused");
        assert.equal(warmer.status().done, 1);

        assert.equal(warmer.resume().state, "running");
        const status = await until(warmer, finished);
        assert.deepEqual({state: status.state, done: status.done, computed: status.computed}, {state: "idle", done: 4, computed: 4});
        assert.deepEqual(host.calls, chunks(4));
        await warmer.close();
    });

    it("a trigger while paused waits for resume; pausing when idle shows paused", async () => {
        const host = new ScriptedHost(chunks(2));
        const warmer = new CacheWarmer(host);
        warmer.pause();
        warmer.start();
        await nextTurn();
        assert.equal(warmer.status().state, "paused");
        assert.equal(host.listings, 0);
        warmer.resume();
        const status = await until(warmer, (s) => finished(s) && s.done === 2);
        assert.equal(status.state, "idle");
        await warmer.close();
    });

    it("a new trigger restarts the pass over the new library, never running two at once", async () => {
        const host = new ScriptedHost(chunks(3));
        const warmer = new CacheWarmer(host);
        host.hold = gate();
        warmer.start();
        await eventually(() => host.calls.length === 1, "the first chunk started");
        host.chunks = [...chunks(3), "chunk-4", "chunk-5"];
        warmer.trigger();
        warmer.trigger();
        const held = host.hold;
        host.hold = null;
        held.open();
        const status = await until(warmer, (s) => finished(s) && s.total === 5);
        assert.equal(status.done, 5);
        assert.equal(status.computed, 4, "chunk-1 was computed by the first pass");
        assert.equal(host.listings, 2, "two triggers while running make one more pass");
        assert.equal(host.maxInFlight, 1);
        assert.deepEqual(host.calls, ["chunk-1", ...chunks(3), "chunk-4", "chunk-5"]);
        await warmer.close();
    });

    it("counts and logs a failing chunk and goes on", async () => {
        const host = new ScriptedHost(chunks(6));
        for (const text of ["chunk-2", "chunk-3", "chunk-4", "chunk-5"])
            host.failing.add(text);
        const lines: string[] = [];
        const warmer = new CacheWarmer(host, {log: (line) => lines.push(line), loggedFailures: 2});
        warmer.start();
        const status = await until(warmer, (s) => finished(s) && s.total === 6);
        assert.deepEqual({done: status.done, computed: status.computed, failed: status.failed}, {done: 6, computed: 2, failed: 4});
        assert.equal(status.reason, "4 chunks failed");
        assert.equal(lines.filter((line) => line.includes("cannot evaluate")).length, 2);
        assert.ok(lines.some((line) => line.includes("4 of 6 chunks failed")));
        CacheWarmStatus.parse(status);
        await warmer.close();
    });

    it("is unavailable, with the reason, when chunks cannot be computed here", async () => {
        const host = new ScriptedHost(chunks(3));
        host.unavailable = "needs the patched llama.cpp build";
        const warmer = new CacheWarmer(host);
        warmer.start();
        const status = await until(warmer, (s) => s.state === "unavailable");
        assert.equal(status.reason, "needs the patched llama.cpp build");
        assert.equal(host.calls.length, 1, "one try is enough");
        assert.equal(warmer.pause().state, "unavailable", "pausing does not hide why");
        await warmer.close();
    });

    it("skips without a model and stops when its writes make the disk tier evict", async () => {
        const host = new ScriptedHost(chunks(4));
        host.modelId = null;
        const warmer = new CacheWarmer(host);
        warmer.start();
        let status = await until(warmer, (s) => s.reason != null);
        assert.deepEqual(status, {state: "idle", modelId: null, done: 0, total: 0, computed: 0, failed: 0, reason: "no model is set up"});
        assert.equal(host.listings, 0);

        host.modelId = "model-a";
        const original = host.warmChunk.bind(host);
        host.warmChunk = async (modelId, text) => {
            const outcome = await original(modelId, text);
            if (text === "chunk-2")
                host.evictions++;
            return outcome;
        };
        warmer.trigger();
        status = await until(warmer, (s) => s.modelId === "model-a" && finished(s));
        assert.equal(status.done, 2);
        assert.match(status.reason ?? "", /disk budget is full/);
        await warmer.close();
    });

    it("close() waits for the chunk in progress and starts no other", async () => {
        const host = new ScriptedHost(chunks(3));
        const warmer = new CacheWarmer(host);
        host.hold = gate();
        warmer.start();
        await eventually(() => host.calls.length === 1, "the first chunk started");
        let closed = false;
        const closing = warmer.close().then(() => {
            closed = true;
        });
        await nextTurn();
        assert.equal(closed, false, "the chunk in progress finishes first");
        host.hold.open();
        await closing;
        assert.deepEqual(host.calls, ["chunk-1"]);
        warmer.trigger();
        warmer.start();
        await nextTurn();
        assert.deepEqual(host.calls, ["chunk-1"]);
    });
});
