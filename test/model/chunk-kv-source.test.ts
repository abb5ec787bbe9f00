// Where a blend's chunk KVs come from (main/engine/blend/chunk-kv-source.ts) when the controller judges recomputing
// a chunk sooner than reading its disk file: the chunk is recomputed, and the file, already on disk, is neither
// encoded nor written again on the question's path; a chunk a question computes is written to disk after the
// question; and what the controller learns of prefill from chunks computed at once.
import assert from "node:assert/strict";
import {readFile, stat, writeFile} from "node:fs/promises";
import path from "node:path";
import {after, before, describe, it} from "node:test";
import {getLlama, type Llama, type LlamaContext, type LlamaContextSequence, LlamaLogLevel, type LlamaModel} from "node-llama-cpp";
import {type BlendSession, openBlendSession, promptFormatVersion} from "../../main/engine/blend/blend.js";
import {tokensHash} from "../../main/engine/blend/chunk-kv-source.js";
import {ChunkKvCache} from "../../main/engine/kv/chunk-cache.js";
import {blendSkipReason, storyQuestion, storySources} from "../helpers/blend-prompt.js";
import {buildPrompt} from "../../main/engine/prompt.js";
import {makeTempDir, stories260kPath, testThreads} from "../helpers/paths.js";

const skip = blendSkipReason();

describe("chunk KVs when the controller chooses recompute (stories260K, CPU, patched build)", {skip}, () => {
    let temp: Awaited<ReturnType<typeof makeTempDir>>;
    let llama: Llama;
    let model: LlamaModel;
    let context: LlamaContext;
    let sequence: LlamaContextSequence;
    let cache: ChunkKvCache;
    let blend: BlendSession;

    before(async () => {
        temp = await makeTempDir();
        llama = await getLlama({gpu: false, maxThreads: testThreads, build: "never", logLevel: LlamaLogLevel.error});
        model = await llama.loadModel({modelPath: stories260kPath});
        context = await model.createContext({contextSize: 512, threads: testThreads, sequences: 1, flashAttention: true});
        // As after a restart: no RAM tier, codec files on disk.
        cache = await ChunkKvCache.open({dataDir: path.join(temp.dir, "data"), ramBudgetBytes: 0, diskBudgetBytes: 64 * 1024 ** 2,
            codec: {level: 2, threads: 1}});
        sequence = context.getSequence();
        const opened = await openBlendSession({llama, model, context, sequence, modelPath: stories260kPath, cache,
            threads: testThreads, residentBudgetBytes: 0});
        assert.ok(opened.available, opened.available ? "" : opened.reason);
        blend = opened.value;
    });

    after(async () => {
        await blend?.close();
        await context?.dispose();
        await model?.dispose();
        await llama?.dispose();
        await temp?.cleanup();
    });

    it("recomputes a chunk whose file the controller skips without rewriting the file", async () => {
        const tokens = model.tokenize(storySources[0]!.text);
        const first = await blend.chunkKv(tokens);
        assert.equal(first.source.kvSource, "recompute");
        assert.equal(cache.stats().disk.writes, 1, "a chunk computed for the first time is stored");
        const file = cache.pathOf({fingerprint: blend.fingerprint, chunkHash: tokensHash(tokens), promptFormatVersion});

        const fromDisk = await blend.chunkKv(tokens);
        assert.equal(fromDisk.source.kvSource, "disk", "the controller reads the disk until every rate is measured");
        assert.equal(fromDisk.source.codecLevel, 2);
        const stored = await stat(file);  // a disk hit touches the file (LRU order)

        // A slow disk and decoder against a fast prefill (a GPU): recomputing the chunk wins.
        for (let i = 0; i < 40; i++) {
            blend.kvController.observeDiskRead(1e3, 1e3);
            blend.kvController.observeDecode(1e3, 1, 1e3);
            blend.kvController.observePrefill(1e6, 1);
        }
        assert.equal(blend.kvController.choose({tokens: tokens.length, fileBytes: stored.size, coded: true}).source, "recompute");

        const recomputed = await blend.chunkKv(tokens);
        assert.equal(recomputed.source.kvSource, "recompute");
        assert.equal(recomputed.body.cells.length, tokens.length);
        assert.deepEqual(recomputed.body.layers[0]!.k.rows, first.body.layers[0]!.k.rows, "the same KV as computed the first time");
        assert.equal(cache.stats().disk.writes, 1, "the file on disk was not encoded and written again");
        const after = await stat(file);
        assert.equal(after.mtimeMs, stored.mtimeMs);
        assert.equal(after.size, stored.size);
    });

    it("writes a chunk a question computed to disk after returning its KV (diskLater), and says when it is written", async () => {
        const tokens = model.tokenize(storySources[1]!.text);
        const file = cache.pathOf({fingerprint: blend.fingerprint, chunkHash: tokensHash(tokens), promptFormatVersion});
        const writes = cache.stats().disk.writes;
        const load = await blend.chunkKv(tokens, {diskLater: true});
        assert.equal(load.source.kvSource, "recompute");
        // The encode runs on the addon's threads: it cannot have finished before this continuation runs.
        assert.equal(cache.stats().disk.writes, writes, "not written yet");
        await assert.rejects(stat(file));
        await blend.storesSettled();
        assert.equal(cache.stats().disk.writes, writes + 1);
        assert.ok((await stat(file)).isFile());
        const onDisk = await cache.get({fingerprint: blend.fingerprint, chunkHash: tokensHash(tokens), promptFormatVersion});
        assert.ok(onDisk.hit && onDisk.tier === "disk" && onDisk.codecLevel === 2);
        assert.deepEqual(onDisk.tokens, Int32Array.from(tokens));
    });

    it("times each chunk's prefill alone, not its wait behind the others computed before it", async () => {
        // A question starts every chunk it recomputes at once; they run one at a time on the small context. Counting
        // a chunk's wait for the earlier ones would make prefill look several times slower than it is.
        const observed: number[] = [];
        const observe = blend.kvController.observePrefill.bind(blend.kvController);
        blend.kvController.observePrefill = (tokens, ms) => {
            observed.push(ms);
            observe(tokens, ms);
        };
        try {
            const startedAt = performance.now();
            const loads = await Promise.all(storySources.map((source, index) => blend.chunkKv(model.tokenize(`${source.text} ${index}`))));
            const wallMs = performance.now() - startedAt;
            assert.ok(loads.every((load) => load.source.kvSource === "recompute"));
            assert.equal(observed.length, storySources.length);
            // One after another, so their own times add up to less than the wall time of all three.
            const summed = observed.reduce((sum, ms) => sum + ms, 0);
            assert.ok(summed <= wallMs, `prefill times ${observed.map((ms) => ms.toFixed(1)).join(", ")} ms sum past the ${wallMs.toFixed(1)} ms wall`);
        } finally {
            blend.kvController.observePrefill = observe;
        }
    });

    it("answers with a full prefill, and says why, when the chunks on disk would load slower than the prompt prefills", async () => {
        const prompt = buildPrompt(model, storyQuestion, storySources.map((source, index) => ({n: index + 1, path: source.path, text: source.text})), false);
        await blend.prepare(prompt, "naive", 0);  // computes the chunks; with no RAM tier they go to disk after the question
        await blend.storesSettled();
        // A session just opened (as after a restart) has only priors for its rates: no fallback is decided on them, the
        // first cold question reads the disk and so measures it.
        const reopened = await openBlendSession({llama, model, context, sequence, modelPath: stories260kPath, cache,
            threads: testThreads, residentBudgetBytes: 0});
        assert.ok(reopened.available, reopened.available ? "" : reopened.reason);
        const first = await reopened.value.prepare(prompt, "naive", 0, {fullPrefillMs: 1e-6});
        assert.equal(first.strategy, "naive", first.fallbackReason);
        assert.ok(first.chunkKv?.some((chunk) => chunk.kvSource === "disk"), JSON.stringify(first.chunkKv));
        await reopened.value.close();
        // A fast disk and decoder against a slow prefill (the earlier test set the opposite): every chunk is read from
        // disk, and the plan expects the disk's time.
        for (let i = 0; i < 40; i++) {
            blend.kvController.observePrefill(1, 1e3);
            blend.kvController.observeDiskRead(1e9, 1);
            blend.kvController.observeDecode(1e9, 1, 1);
        }

        const chunks = prompt.segments.filter((segment) => segment.kind === "chunk").length;
        const cold = await blend.prepare(prompt, "naive", 0, {fullPrefillMs: 1e-6});
        assert.equal(cold.strategy, "full");
        assert.match(cold.fallbackReason ?? "", /^naive: loading its chunks from disk \(about \d+ ms\) is slower than a full prefill/);
        assert.deepEqual(cold.tokensToEvaluate, prompt.tokens);
        assert.equal(cold.reusedTokens + cold.recomputedTokens + cold.freshTokens, prompt.tokens.length);
        assert.deepEqual(cold.chunkKv?.map((chunk) => chunk.kvSource), Array.from({length: chunks}, () => "recompute"));
        assert.equal(cold.kvBytesRead, 0);

        const blended = await blend.prepare(prompt, "naive", 0, {fullPrefillMs: 1e9});
        assert.equal(blended.strategy, "naive", blended.fallbackReason);
        assert.deepEqual(blended.chunkKv?.map((chunk) => chunk.kvSource), Array.from({length: chunks}, () => "disk"));
        assert.ok((blended.kvBytesRead ?? 0) > 0);
    });

    it("with uncachedFallback, prefills in full while computing the uncached chunks would be slower, and blends once cacheChunks computed them", async () => {
        // Sources no earlier test computed: every chunk misses every tier. The earlier test measured a slow prefill
        // (1 token per second), so computing these chunks alone would take minutes.
        const sourcesWith = (tail: string) => storySources.map((source, index) => ({n: index + 1, path: source.path, text: `${source.text} ${tail} ${index}.`}));
        const prompt = buildPrompt(model, storyQuestion, sourcesWith("Then it rained"), false);
        const chunkCount = prompt.segments.filter((segment) => segment.kind === "chunk").length;
        const cold = await blend.prepare(prompt, "chunk-head", 0.15, {uncachedFallback: true, fullPrefillMs: 50});
        assert.equal(cold.strategy, "full");
        assert.match(cold.fallbackReason ?? "", new RegExp(`^chunk-head: ${chunkCount} of ${chunkCount} retrieved chunks have no cached KV yet ` +
            "\\(100 % of their tokens\\); computing them before the blend \\(about \\d+ ms\\) would take longer than a full prefill \\(about 50 ms\\); used full prefill$"));
        assert.deepEqual(cold.tokensToEvaluate, prompt.tokens);
        assert.equal(cold.uncachedChunks?.length, chunkCount);

        await blend.storesSettled();
        const writes = cache.stats().disk.writes;
        // A question waiting stops it after the chunk in progress.
        let asked = 0;
        await blend.cacheChunks(cold.uncachedChunks!, {stop: () => asked++ >= 1});
        await blend.storesSettled();
        assert.equal(cache.stats().disk.writes, writes + 1, "one chunk computed before the stop");
        await blend.cacheChunks(cold.uncachedChunks!);
        await blend.storesSettled();
        assert.equal(cache.stats().disk.writes, writes + chunkCount, "each uncached chunk computed and stored once");
        // Cached now: the same full prefill time no longer makes it fall back for uncached chunks (the controller may
        // still weigh the disk files against a prefill, the test before's fallback).
        const warm = await blend.prepare(prompt, "chunk-head", 0.15, {uncachedFallback: true, fullPrefillMs: 50});
        assert.equal(warm.uncachedChunks, undefined);
        assert.doesNotMatch(warm.fallbackReason ?? "", /no cached KV/);

        // The controls: a full prefill slower still, or a strategy asked for by name (no uncachedFallback), blend over
        // uncached chunks, computing them.
        const slower = await blend.prepare(buildPrompt(model, storyQuestion, sourcesWith("The end"), false), "chunk-head", 0.15,
            {uncachedFallback: true, fullPrefillMs: 1e12});
        assert.equal(slower.strategy, "chunk-head", slower.fallbackReason);
        const named = await blend.prepare(buildPrompt(model, storyQuestion, sourcesWith("Or not"), false), "chunk-head", 0.15, {fullPrefillMs: 50});
        assert.equal(named.strategy, "chunk-head", named.fallbackReason);
        assert.ok(named.chunkKv?.every((chunk) => chunk.kvSource === "recompute"), JSON.stringify(named.chunkKv));
    });

    it("splices disk chunks from their files straight into the cells; a damaged file is dropped and its chunk computed", async () => {
        const prompt = buildPrompt(model, storyQuestion, storySources.map((source, index) => ({n: index + 1, path: source.path, text: source.text})), false);
        await blend.prepare(prompt, "naive", 0);
        await blend.storesSettled();
        // A session just opened (priors only: the controller reads the disk) over the same files.
        const reopened = await openBlendSession({llama, model, context, sequence, modelPath: stories260kPath, cache,
            threads: testThreads, residentBudgetBytes: 0});
        assert.ok(reopened.available, reopened.available ? "" : reopened.reason);
        const session = reopened.value;
        let spliced: {codedBytes: number} | undefined;
        const trace = {splice: (result: {codedBytes: number}) => { spliced = result; }};
        try {
            const fromFiles = await session.prepare(prompt, "naive", 0, {trace});
            assert.ok(fromFiles.chunkKv?.every((chunk) => chunk.kvSource === "disk" && chunk.codecLevel === 2), JSON.stringify(fromFiles.chunkKv));
            assert.ok(spliced != null && spliced.codedBytes > 0, "the chunks were decoded in the splice");
            assert.equal(fromFiles.uncachedChunks, undefined, "no RAM tier to fill after the answer");

            const chunk = prompt.segments.filter((segment) => segment.kind === "chunk")[1]!;
            const file = cache.pathOf({fingerprint: blend.fingerprint, chunkHash: tokensHash(chunk.tokens), promptFormatVersion});
            const bytes = await readFile(file);
            bytes[bytes.byteLength - 30]! ^= 0x40;
            await writeFile(file, bytes);
            const dropped = cache.stats().droppedCorrupt;
            const repaired = await session.prepare(prompt, "naive", 0, {trace});
            assert.equal(repaired.strategy, "naive");
            assert.equal(spliced?.codedBytes, 0, "the splice ran again with rows");
            assert.equal(cache.stats().droppedCorrupt, dropped + 1, "the damaged file was dropped");
            assert.deepEqual(repaired.chunkKv?.map((source) => source.kvSource), ["disk", "recompute", "disk"]);
        } finally {
            await session.close();
        }

        // Where the cache keeps a RAM tier, the chunks decoded in the splice are handed to cacheChunks for it.
        const withRam = await ChunkKvCache.open({dataDir: path.join(temp.dir, "with-ram"), ramBudgetBytes: 1, diskBudgetBytes: 64 * 1024 ** 2,
            codec: {level: 2, threads: 1}});
        const ramSession = await openBlendSession({llama, model, context, sequence, modelPath: stories260kPath, cache: withRam,
            threads: testThreads, residentBudgetBytes: 0});
        assert.ok(ramSession.available, ramSession.available ? "" : ramSession.reason);
        try {
            await ramSession.value.prepare(prompt, "naive", 0);  // computes the chunks: on disk after the question (too big for 1 byte of RAM)
            await ramSession.value.storesSettled();
            const handed = await ramSession.value.prepare(prompt, "naive", 0, {trace});
            assert.ok(spliced != null && spliced.codedBytes > 0);
            const chunks = prompt.segments.filter((segment) => segment.kind === "chunk").map((segment) => segment.tokens);
            assert.deepEqual(handed.uncachedChunks, chunks);
            const hits = withRam.stats().disk.hits;
            await ramSession.value.cacheChunks(handed.uncachedChunks!);
            assert.equal(withRam.stats().disk.hits, hits + chunks.length, "each chunk read from disk again, for the RAM tier");
        } finally {
            await ramSession.value.close();
        }
    });
});
