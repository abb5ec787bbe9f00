// Background chunk-KV-cache warming through the real engine (patched llama.cpp build, native addon, stories260K):
// an ingest warms every chunk, a question then loads them instead of computing them, pause holds warming back,
// and questions asked while it runs are answered (and answered the same).
import assert from "node:assert/strict";
import {writeFile} from "node:fs/promises";
import path from "node:path";
import {after, before, describe, it} from "node:test";
import {setTimeout as delay} from "node:timers/promises";
import {type CacheWarmEvent, CacheWarmStatus, ChatRequest, EngineStatus, type IngestEvent} from "../../main/contract/index.js";
import {Engine} from "../../main/engine/engine.js";
import {collectEvents, lastEvent} from "../helpers/collect.js";
import {testThreads} from "../helpers/paths.js";
import {weft} from "../helpers/weft-cli.js";
import {blendSkipReason} from "../helpers/blend-prompt.js";
import {type EngineFolder, openEngineWithFolder} from "../helpers/engine-folder.js";

const skip = blendSkipReason();

const names = ["Lily", "Tom", "Sue", "Ben", "Max", "Mia", "Sam", "Zoe", "Tim", "Ann", "Bob", "Kim"];
const things = ["red ball", "old key", "blue kite", "small boat", "green frog", "big cake"];
const story = (index: number) => `${names[index % names.length]} found a ${things[index % things.length]} by the river on day ${index + 1}. ` +
    `${names[(index + 3) % names.length]} laughed and they played until the sun went down.`;

/** Polls the engine's status (as a UI without the event stream would) until the warming status satisfies `predicate`. */
async function warmStatus(engine: Engine, predicate: (status: CacheWarmStatus) => boolean, what: string): Promise<CacheWarmStatus> {
    let last: CacheWarmStatus | undefined;
    for (let attempt = 0; attempt < 2400; attempt++) {
        const status = EngineStatus.parse(await engine.getStatus());
        last = status.cacheWarm;
        if (predicate(last))
            return last;
        await delay(50);
    }
    assert.fail(`cache warming never got to "${what}"; last status ${JSON.stringify(last)}`);
}

/** A pass warms two versions of each chunk: its plain KV, then its lead version (for when it is the first source). */
const finishedPass = (chunks: number) => (status: CacheWarmStatus) => status.state === "idle" && status.total === 2 * chunks && status.done === 2 * chunks;

describe("background chunk KV cache warming (patched build)", {skip, timeout: 300_000}, () => {
    let setup: EngineFolder;
    let folder: string;
    let dataDir: string;
    let engine: Engine;
    let chunkCount = 0;
    const logs: string[] = [];

    const ingest = async () => {
        let done: Extract<IngestEvent, {type: "done"}> | undefined;
        for await (const event of engine.ingestFolder({path: folder}, new AbortController().signal)) {
            assert.notEqual(event.type, "error", JSON.stringify(event));
            if (event.type === "done")
                done = event;
        }
        assert.ok(done != null && !done.cancelled);
        return done;
    };
    const ask = async (strategy: ChatRequest["strategy"], ratio = 0.15) =>
        lastEvent(await collectEvents(engine.chat(ChatRequest.parse({question: "Lily found a red ball", maxTokens: 16, strategy, ratio, topK: 3}),
            new AbortController().signal)), "done");

    before(async () => {
        setup = await openEngineWithFolder(Object.fromEntries(Array.from({length: 8}, (_, index) => [`story-${index + 1}.txt`, `${story(index)}\n`])));
        ({engine, folder, dataDir} = setup);
        engine.startCacheWarming((line) => logs.push(line));
    });

    after(async () => {
        await setup?.cleanup();
    });

    it("an ingest warms every chunk in the background; a question then loads them instead of computing them", async () => {
        const done = await ingest();
        chunkCount = done.summary.chunks;
        assert.ok(chunkCount >= 8, `${chunkCount} chunks`);

        const status = await warmStatus(engine, finishedPass(chunkCount), "all chunks warmed");
        assert.deepEqual({computed: status.computed, failed: status.failed, modelId: status.modelId},
            {computed: 2 * chunkCount, failed: 0, modelId: (await engine.getStatus()).activeModelId}, JSON.stringify(logs));
        assert.equal(status.reason, undefined);

        // Two files per chunk: its plain KV and its lead version (for when it is a prompt's first source).
        const stats = await engine.cacheStats();
        assert.equal(stats.disk.entries, 2 * chunkCount, "two cache files per chunk");
        assert.equal(stats.disk.writes, 2 * chunkCount);

        // Another process sees them on disk too.
        const cli = await weft(["cache", "stats", "--json", "--data", dataDir]);
        assert.equal(cli.code, 0, cli.stderr);
        assert.equal((JSON.parse(cli.stdout) as {disk: {entries: number}}).disk.entries, 2 * chunkCount);

        for (const strategy of ["hkvd", "naive"] as const) {
            const answer = await ask(strategy);
            assert.equal(answer.stats.strategy, strategy, answer.stats.strategyFallbackReason);
            assert.ok(answer.citations.length > 0);
            assert.ok(answer.stats.kvBytesLoaded > 0, "chunk KVs came from the cache");
            assert.ok(answer.stats.reusedTokens > 0, JSON.stringify(answer.stats));
        }
        const after = await engine.cacheStats();
        assert.equal(after.disk.writes, 2 * chunkCount, "the questions computed no chunk: every one was a hit");
        assert.ok(after.ram.hits + after.disk.hits > stats.ram.hits + stats.disk.hits);
    });

    it("reports progress on the watchCacheWarm stream, which ends with done when cancelled", async () => {
        const controller = new AbortController();
        const events: CacheWarmEvent[] = [];
        for await (const event of engine.watchCacheWarm({}, controller.signal)) {
            events.push(event);
            if (events.length === 1)
                controller.abort();
        }
        assert.deepEqual(events.map((event) => event.type), ["status", "done"]);
        const first = events[0]!;
        assert.ok(first.type === "status" && first.status.state === "idle" && first.status.done === 2 * chunkCount);
    });

    it("pausing holds warming back, resuming finishes it", async () => {
        const paused = CacheWarmStatus.parse(await engine.pauseCacheWarm());
        assert.equal(paused.state, "paused");
        const writesBefore = (await engine.cacheStats()).disk.writes;

        // New chunks while paused: the pass they ask for waits.
        for (let index = 8; index < 12; index++)
            await writeFile(path.join(folder, `story-${index + 1}.txt`), `${story(index)}\n`);
        const done = await ingest();
        assert.equal(done.summary.changedFiles, 4);
        const total = done.summary.chunks;
        for (let check = 0; check < 10; check++) {
            await delay(50);
            assert.equal((await engine.getStatus()).cacheWarm.state, "paused");
        }
        assert.equal((await engine.cacheStats()).disk.writes, writesBefore, "nothing was computed while paused");

        const resumed = CacheWarmStatus.parse(await engine.resumeCacheWarm());
        assert.notEqual(resumed.state, "paused");
        const status = await warmStatus(engine, finishedPass(total), "the new chunks warmed");
        assert.equal(status.computed, 2 * (total - chunkCount), "only the new chunks were computed");
        const stats = await engine.cacheStats();
        assert.equal(stats.disk.writes, writesBefore + 2 * (total - chunkCount));
        assert.equal(stats.disk.entries, 2 * total);
        chunkCount = total;
    });

    it("a question asked while warming runs first and is answered the same", async () => {
        const reference = await ask("full");
        await engine.clearCache();

        // A pass with every chunk to compute, and a question right away: warming waits for it.
        engine.startCacheWarming();
        const duringAnswer: Promise<EngineStatus>[] = [];
        const events = await collectEvents(engine.chat(ChatRequest.parse({question: "Lily found a red ball", maxTokens: 16, strategy: "prefix", topK: 3}),
            new AbortController().signal), () => duringAnswer.push(engine.getStatus()));
        const answer = lastEvent(events, "done");
        assert.equal(answer.answer, reference.answer);
        for (const status of await Promise.all(duringAnswer)) {
            assert.equal(status.cacheWarm.state, "running");
            assert.equal(status.cacheWarm.done, 0, "no chunk is warmed while a question runs");
        }

        // And a question that arrives mid-pass.
        await warmStatus(engine, (status) => status.done >= 1, "the first chunk warmed");
        const again = await ask("prefix");
        assert.equal(again.answer, reference.answer);

        const status = await warmStatus(engine, finishedPass(chunkCount), "every chunk warmed again");
        assert.equal(status.failed, 0);
        assert.equal((await engine.cacheStats()).disk.entries, 2 * chunkCount);
        const blended = await ask("hkvd", 1);
        assert.equal(blended.answer, reference.answer, "hkvd at ratio 1 over the warmed caches matches full prefill");
    });

    it("warming leaves the chat's KV alone: the next prefix question still reuses the previous prompt", async () => {
        await warmStatus(engine, (status) => status.state === "idle", "idle");
        await engine.clearCache();
        const first = await ask("prefix");
        // Every chunk's KV computed now, between two questions (what background warming does).
        const warmed = await engine.warmCache(null);
        assert.equal(warmed.computed, chunkCount);
        const second = await ask("prefix");
        assert.equal(second.answer, first.answer);
        assert.ok(second.stats.reusedTokens >= second.stats.promptTokens - 1,
            `the whole previous prompt is reused (${second.stats.reusedTokens} of ${second.stats.promptTokens})`);
    });

    it("close() stops a pass that has just started", async () => {
        await engine.clearCache();
        engine.startCacheWarming();
        assert.equal((await engine.getStatus()).cacheWarm.state, "running");
        await engine.close();
        const status = CacheWarmStatus.parse((await engine.getStatus()).cacheWarm);
        assert.deepEqual({state: status.state, done: status.done}, {state: "idle", done: 0});
        const cli = await weft(["cache", "stats", "--json", "--data", dataDir]);
        assert.equal((JSON.parse(cli.stdout) as {disk: {entries: number}}).disk.entries, 0, "nothing was computed after close()");

        // Reopened for after(); an engine that was not asked to warm never does.
        engine = await Engine.open({dataDir, threads: testThreads, gpu: false});
        assert.equal((await engine.getStatus()).cacheWarm.state, "idle");
    });
});

describe("background warming fills the resident (GPU) tier (patched build)", {skip, timeout: 300_000}, () => {
    it("after warming, the first naive question places its chunks from the tier", async () => {
        // On CPU the tier is RAM in the KV cache's buffer type: the same code path as GPU memory on a GPU.
        const setup = await openEngineWithFolder(Object.fromEntries(Array.from({length: 8}, (_, index) => [`story-${index + 1}.txt`, `${story(index)}\n`])),
            {residentKvBytes: 64 * 1024 ** 2});
        try {
            setup.engine.startCacheWarming();
            let chunks = 0;
            for await (const event of setup.engine.ingestFolder({path: setup.folder}, new AbortController().signal))
                if (event.type === "done")
                    chunks = event.summary.chunks;
            await warmStatus(setup.engine, finishedPass(chunks), "all chunks warmed");
            const answer = lastEvent(await collectEvents(setup.engine.chat(ChatRequest.parse({question: "Lily found a red ball", maxTokens: 8,
                strategy: "naive", topK: 3}), new AbortController().signal)), "done");
            assert.equal(answer.stats.strategy, "naive", answer.stats.strategyFallbackReason);
            assert.ok(answer.stats.kvResidentBytes > 0, JSON.stringify(answer.stats));
            assert.equal(answer.stats.kvBytesLoaded, 0, "every retrieved chunk was already resident");
        } finally {
            await setup.cleanup();
        }
    });
});
