import assert from "node:assert/strict";
import {copyFile, readdir, readFile, rename, stat, truncate, writeFile} from "node:fs/promises";
import path from "node:path";
import {after, before, describe, it} from "node:test";
import {AnswerStats, AskResult, ChatRequest} from "../../main/contract/index.js";
import {Engine} from "../../main/engine/engine.js";
import {minRecomputedPerChunk} from "../../main/engine/blend/fused.js";
import {collectEvents, lastEvent} from "../helpers/collect.js";
import {makeTempDir, stories260kPath, testThreads, tinyRandomLlama2Path} from "../helpers/paths.js";
import {weft} from "../helpers/weft-cli.js";
import {blendSkipReason} from "../helpers/blend-prompt.js";
import {type EngineFolder, openEngineWithFolder} from "../helpers/engine-folder.js";

const skip = blendSkipReason();

const stories = [
    "Lily had a red ball. She played with it in the park every morning before school.",
    "Tom the dog liked to dig holes in the garden. One day he found an old shiny key.",
    "Mom baked cookies for the party. Lily and Tom ate them under the big green tree."
];

async function wkvFiles(dataDir: string): Promise<string[]> {
    const root = path.join(dataDir, "kvcache");
    const found: string[] = [];
    for (const fingerprint of await readdir(root))
        for (const file of await readdir(path.join(root, fingerprint)))
            if (file.endsWith(".wkv"))
                found.push(path.join(root, fingerprint, file));

    return found.sort();
}

describe("blend strategies through the engine (patched build)", {skip}, () => {
    let setup: EngineFolder;
    let folder: string;
    let dataDir: string;
    let engine: Engine;

    before(async () => {
        setup = await openEngineWithFolder(Object.fromEntries(stories.map((text, index) => [`story-${index + 1}.txt`, `${text}\n`])));
        ({engine, folder, dataDir} = setup);
        await collectEvents(engine.ingestFolder({path: folder}, new AbortController().signal) as never);
    });

    after(async () => {
        await setup?.cleanup();
    });

    const ask = async (target: Engine, strategy: ChatRequest["strategy"], ratio = 0.15) =>
        lastEvent(await collectEvents(target.chat(ChatRequest.parse({question: "Lily Tom", maxTokens: 24, strategy, ratio, topK: 3}),
            new AbortController().signal)), "done");

    it("chunk-head and hkvd at ratio 1.0 give the full prefill's greedy answer", async () => {
        const full = await ask(engine, "full");
        assert.equal(full.citations.length, 3);
        for (const strategy of ["chunk-head", "hkvd"] as const) {
            const blended = await ask(engine, strategy, 1);
            assert.equal(blended.stats.strategy, strategy, blended.stats.strategyFallbackReason);
            // the first source (the question's focus) comes as its lead version, exact as cached; the rest is recomputed
            assert.deepEqual(blended.stats.exactSources, [1]);
            assert.equal(blended.stats.reusedTokens, blended.stats.chunkKv![0]!.tokens);
            assert.equal(blended.answer, full.answer, `${strategy} at ratio 1.0: ${JSON.stringify(blended.stats)}`);
        }
    });

    it("a blend path that failed to open is tried again by the next question, not cached as a failure", async () => {
        // The blend session reads the model file for its cache fingerprint: with the file gone (after the model loaded),
        // opening it fails; once the file is back, the next question must blend again.
        const temp = await makeTempDir();
        const modelPath = path.join(temp.dir, "stories260K.gguf");
        await copyFile(stories260kPath, modelPath);
        const own = await Engine.open({dataDir: path.join(temp.dir, "data"), threads: testThreads, gpu: false});
        try {
            await own.addModel({path: modelPath});
            await collectEvents(own.ingestFolder({path: folder}, new AbortController().signal) as never);
            await own.warmUp();
            await rename(modelPath, `${modelPath}.away`);
            const failed = await ask(own, "hkvd", 0.15);
            assert.equal(failed.stats.strategy, "prefix");
            assert.match(failed.stats.strategyFallbackReason ?? "", /hkvd unavailable: the blend path failed to open/);
            await rename(`${modelPath}.away`, modelPath);
            const retried = await ask(own, "hkvd", 0.15);
            assert.equal(retried.stats.strategy, "hkvd", retried.stats.strategyFallbackReason);
        } finally {
            await own.close();
            await temp.cleanup();
        }
    });

    it("weft cache stats reports the chunk KVs that could not be stored (none here)", async () => {
        const stats = await engine.cacheStats();
        assert.deepEqual(stats.failures, {residentAdmission: {count: 0, lastError: null}, chunkCachePut: {count: 0, lastError: null}});
        const text = await weft(["cache", "stats", "--data", dataDir]);
        assert.equal(text.code, 0, text.stderr);
        assert.match(text.stdout, /0 chunk KVs not cached, 0 not kept resident/);
        // The disk copies are codec containers: the other process reads their shapes and reports what they save.
        assert.ok(stats.disk.entries > 0 && stats.disk.f16Bytes > 2 * stats.disk.bytes, JSON.stringify(stats.disk));
        const saved = /, ([\d.]+ [KMG]?i?B) saved by the KV codec\)/.exec(text.stdout);
        assert.ok(saved != null && !saved[1]!.startsWith("0 "), text.stdout);
    });

    it("hkvd at 0.15 reuses most chunk tokens, and its stats add up", async () => {
        const done = await ask(engine, "hkvd", 0.15);
        const stats = AnswerStats.parse(done.stats);
        assert.equal(stats.strategy, "hkvd");
        assert.equal(stats.ratio, 0.15);
        // The sources the question is about ("Lily Tom": the stories naming them) are recomputed whole (focus.ts), and
        // they are sources of this answer; the rest recompute at least minRecomputedPerChunk (12) tokens each.
        assert.ok(stats.focusSources != null && stats.focusSources.length >= 1, JSON.stringify(stats));
        const cited = new Set(done.citations.map((citation) => citation.n));
        assert.ok(stats.focusSources.every((n) => cited.has(n)), `focus ${stats.focusSources} not among the sources ${[...cited]}`);
        assert.ok(stats.reusedTokens > 0, JSON.stringify(stats));
        // the first source, the question's focus put first, comes as its lead version and is not recomputed
        assert.deepEqual(stats.exactSources, [1]);
        assert.ok(stats.recomputedTokens >= minRecomputedPerChunk * (done.citations.length - 1), JSON.stringify(stats));
        assert.ok(stats.kvBytesLoaded > 0, "chunk KVs came from the cache");
        assert.ok(stats.kvLoadGBps > 0);
        assert.equal(stats.reusedTokens + stats.recomputedTokens + stats.freshTokens, stats.promptTokens);
    });

    it("with a resident tier, the second naive answer places its chunks from it and reports it; the answer is the same", async () => {
        // On CPU the "GPU-resident" tier is RAM in the KV cache's own buffer type: the same code path as on a GPU.
        const resident = await openEngineWithFolder(Object.fromEntries(stories.map((text, index) => [`story-${index + 1}.txt`, `${text}\n`])),
            {residentKvBytes: 64 * 1024 ** 2});
        try {
            await collectEvents(resident.engine.ingestFolder({path: resident.folder}, new AbortController().signal) as never);
            const first = await ask(resident.engine, "naive");
            const firstStats = AnswerStats.parse(first.stats);
            assert.equal(firstStats.strategy, "naive", firstStats.strategyFallbackReason);
            assert.equal(firstStats.kvResidentBytes, 0, "nothing is resident before the first blend");
            let second = await ask(resident.engine, "naive");
            // Admission runs after the first answer's blend; give it one more question if it had not finished.
            if (AnswerStats.parse(second.stats).kvResidentBytes === 0)
                second = await ask(resident.engine, "naive");
            const stats = AnswerStats.parse(second.stats);
            assert.ok(stats.kvResidentBytes > 0, JSON.stringify(stats));
            assert.equal(stats.kvBytesLoaded, 0, "no chunk KV came from the RAM or disk tier");
            assert.equal(stats.reusedTokens + stats.recomputedTokens + stats.freshTokens, stats.promptTokens);
            assert.equal(second.answer, first.answer);
        } finally {
            await resident.cleanup();
        }
    });

    it("prefix reuse never builds on a previous answer's blended KV", async () => {
        const full = await ask(engine, "full");
        await ask(engine, "naive");
        const prefix = await ask(engine, "prefix");
        assert.equal(prefix.stats.strategy, "prefix");
        assert.equal(prefix.stats.reusedTokens, 0);
        assert.equal(prefix.answer, full.answer);
        const again = await ask(engine, "prefix");
        assert.equal(again.stats.reusedTokens, again.stats.promptTokens - 1, "exact KV is reused again");
        assert.equal(again.answer, full.answer);
    });

    it("drops truncated, corrupted and wrong-model cache files, recomputes them, and still answers correctly", async () => {
        const reference = await ask(engine, "hkvd", 1);

        // A valid file of another model, put where one of this model's chunks belongs.
        const otherData = path.join(path.dirname(dataDir), "other");
        const other = await Engine.open({dataDir: otherData, threads: testThreads, gpu: false});
        await other.addModel({path: tinyRandomLlama2Path});
        await collectEvents(other.ingestFolder({path: folder}, new AbortController().signal) as never);
        await other.warmCache(folder);
        await other.close();
        const foreign = (await wkvFiles(otherData))[0]!;

        // Listed once the engine has closed, which waits for the files in flight: the first source's lead version is
        // written after the answer, and a copy left whole would serve that chunk.
        await engine.close();
        const files = await wkvFiles(dataDir);
        assert.ok(files.length >= 3, `${files.length} cache files`);
        const sizes = await Promise.all(files.map(async (file) => (await stat(file)).size));
        // Every file damaged, the three ways in turn. The question reads one per source, so which of them it meets
        // depends on the files' order; the cache's own tests check each reason on its own.
        for (const [index, file] of files.entries()) {
            if (index % 3 === 0)
                await truncate(file, Math.floor(sizes[index]! / 2));
            else if (index % 3 === 1) {
                const bytes = await readFile(file);
                bytes[bytes.length - 40] = bytes[bytes.length - 40]! ^ 0xff;
                await writeFile(file, bytes);
            } else
                await copyFile(foreign, file);
        }

        engine = await Engine.open({dataDir, threads: testThreads, gpu: false});
        const again = await ask(engine, "hkvd", 1);
        assert.equal(again.answer, reference.answer);
        assert.ok((AnswerStats.parse(again.stats).chunkKv ?? []).every((chunk) => chunk.kvSource === "recompute"), `every chunk's file was damaged: ${JSON.stringify(again.stats.chunkKv)}`);
        const stats = await engine.cacheStats();
        // one file read per source (the first source's lead version, the others' chunk files), every one damaged
        assert.equal(stats.droppedCorrupt, 3, JSON.stringify(stats.dropReasons));
        const reasons = Object.keys(stats.dropReasons);
        assert.ok(reasons.length >= 2 && reasons.every((reason) => ["checksum", "truncated", "wrong-model"].includes(reason)), reasons.join());
        // Recomputed and written back whole, through the KV codec: a fresh engine reads them back at its level.
        await engine.close();
        engine = await Engine.open({dataDir, threads: testThreads, gpu: false});
        const fromDisk = AnswerStats.parse((await ask(engine, "hkvd", 1)).stats);
        const chunkKv = fromDisk.chunkKv ?? [];
        assert.ok(chunkKv.length >= 3 && chunkKv.every((chunk) => chunk.kvSource === "disk" && chunk.codecLevel === 2 && chunk.bytesRead > 0),
            JSON.stringify(chunkKv));
        assert.equal(fromDisk.kvBytesRead, chunkKv.reduce((sum, chunk) => sum + chunk.bytesRead, 0));
    });

    it("weft ask --strategy hkvd --json reports the blend stats with the invariant holding", async () => {
        await engine.close();
        const result = await weft(["ask", "--data", dataDir, "--strategy", "hkvd", "--ratio", "0.15", "--json", "--max-tokens", "8",
            "--threads", String(testThreads), "Lily Tom"]);
        engine = await Engine.open({dataDir, threads: testThreads, gpu: false});
        assert.equal(result.code, 0, result.stderr);
        const parsed = AskResult.parse(JSON.parse(result.stdout));
        assert.equal(parsed.stats.strategy, "hkvd", parsed.stats.strategyFallbackReason);
        assert.ok(parsed.stats.reusedTokens > 0, "hkvd reused chunk tokens");
        assert.ok(parsed.stats.recomputedTokens > 0, "hkvd recomputed some");
        for (const key of ["reusedTokens", "recomputedTokens", "freshTokens", "kvBytesLoaded", "kvLoadMs", "kvLoadGBps", "selectMs",
            "recomputeMs", "ttftMs", "fullPrefillEstimateMs", "ratio"] as const)
            assert.ok(key in parsed.stats, key);

        assert.equal(parsed.stats.reusedTokens + parsed.stats.recomputedTokens + parsed.stats.freshTokens, parsed.stats.promptTokens);
    });
});
