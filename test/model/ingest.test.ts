import assert from "node:assert/strict";
import {spawn} from "node:child_process";
import {mkdir, open, rm, symlink, writeFile} from "node:fs/promises";
import path from "node:path";
import {after, before, describe, it} from "node:test";
import {fileURLToPath} from "node:url";
import {ChatRequest, IngestSummary} from "../../main/contract/index.js";
import {Engine} from "../../main/engine/engine.js";
import {LibraryStore} from "../../main/engine/library/store.js";
import {makeDocs, type DocFixtures} from "../fixtures/make-docs.js";
import {collectEvents, lastEvent} from "../helpers/collect.js";
import {makeTempDir, stories260kPath, testThreads} from "../helpers/paths.js";

const here = path.dirname(fileURLToPath(import.meta.url));

async function ingest(engine: Engine, folder: string) {
    const events = await collectEvents(engine.ingestFolder({path: folder}, new AbortController().signal) as never);
    const last = events.at(-1) as unknown as {type: string, summary?: IngestSummary, error?: {message: string}};
    assert.equal(last.type, "done", JSON.stringify(last));
    return {summary: IngestSummary.parse(last.summary), events: events as unknown as Array<{type: string}>};
}

async function search(dataDir: string, query: string) {
    const store = await LibraryStore.open(dataDir);
    try {
        return await store.searchText(query, 10);
    } finally {
        store.close();
    }
}

describe("folder ingestion into LanceDB (real files, real tables)", () => {
    let temp: Awaited<ReturnType<typeof makeTempDir>>;
    let docs: DocFixtures;
    let dataDir: string;
    let engine: Engine;

    before(async () => {
        temp = await makeTempDir();
        docs = await makeDocs(path.join(temp.dir, "docs"));
        dataDir = path.join(temp.dir, "data");
        engine = await Engine.open({dataDir, threads: testThreads, gpu: false});
        await engine.addModel({path: stories260kPath});
    });

    after(async () => {
        await engine.close();
        await temp.cleanup();
    });

    it("indexes good files, lists skipped and broken ones with reasons, and reports progress", async () => {
        const {summary, events} = await ingest(engine, docs.dir);
        const progress = events.filter((event) => event.type === "progress");
        assert.ok(progress.length >= 2);
        assert.equal(summary.tokenizer, "model");

        const errorPaths = summary.errors.map((problem) => problem.path).sort();
        assert.deepEqual(errorPaths, [docs.corruptDocx, docs.corruptPdf, docs.encryptedPdf, docs.truncatedPdf].sort());
        assert.match(summary.errors.find((problem) => problem.path === docs.encryptedPdf)!.reason, /encrypted/);
        const skippedPaths = summary.skipped.map((problem) => problem.path);
        for (const skipped of [docs.binary, docs.binaryTxt, docs.unknownExtension, docs.empty, docs.pdfNoText])
            assert.ok(skippedPaths.includes(skipped), `${skipped} not listed as skipped`);

        const indexed = [docs.markdown, docs.html, docs.text, docs.code, docs.extensionless, docs.pdf, docs.pdfWithBlankPage, docs.docx];
        assert.equal(summary.files, indexed.length);
        assert.ok(summary.chunks >= indexed.length);

        const store = await LibraryStore.open(dataDir);
        try {
            assert.equal(await store.countChunks(), summary.chunks);
        } finally {
            store.close();
        }

        const [folder] = await engine.listFolders();
        assert.equal(folder!.path, docs.dir);
        assert.equal(folder!.errors.length, 4);
    });

    it("finds text with its page number", async () => {
        const hits = await search(dataDir, "BRAVO-PAGE-TWO");
        const pdfHit = hits.find((hit) => hit.path === docs.pdf);
        assert.ok(pdfHit != null, JSON.stringify(hits.map((hit) => hit.path)));
        assert.equal(pdfHit.page, 2);
        assert.match(pdfHit.text, /BRAVO-PAGE-TWO/);
    });

    it("is idempotent: a second run changes nothing and duplicates nothing", async () => {
        const before = await search(dataDir, "BRAVO-PAGE-TWO");
        const {summary} = await ingest(engine, docs.dir);
        assert.equal(summary.changedFiles, 0);
        assert.equal(summary.removedFiles, 0);
        const afterHits = await search(dataDir, "BRAVO-PAGE-TWO");
        assert.deepEqual(afterHits.map((hit) => hit.id), before.map((hit) => hit.id));
    });

    it("re-indexes a changed file, drops a deleted one, and keeps the old chunks of a file that turned unreadable", async () => {
        await writeFile(docs.text, "Quetzalcoatl migrated to the northern plateau in the spring.\n");
        await rm(docs.code);
        const goodPdfChunks = (await search(dataDir, "ALPHA-PAGE-ONE")).filter((hit) => hit.path === docs.pdf);
        assert.ok(goodPdfChunks.length > 0);
        await writeFile(docs.pdf, "%PDF-1.7\nthis is no longer a PDF\n");

        const {summary} = await ingest(engine, docs.dir);
        assert.equal(summary.removedFiles, 1);
        assert.ok((await search(dataDir, "Quetzalcoatl")).some((hit) => hit.path === docs.text));
        assert.equal((await search(dataDir, "def")).some((hit) => hit.path === docs.code), false);
        assert.ok(summary.errors.some((problem) => problem.path === docs.pdf && /corrupt PDF/.test(problem.reason)));
        // Nothing already indexed is lost because a file went bad.
        assert.deepEqual((await search(dataDir, "ALPHA-PAGE-ONE")).filter((hit) => hit.path === docs.pdf).map((hit) => hit.id),
            goodPdfChunks.map((hit) => hit.id));
    });

    it("lists a symlink loop and a 2 GB log without stopping", async () => {
        const loopDir = path.join(docs.dir, "loop");
        await mkdir(loopDir);
        await symlink(docs.dir, path.join(loopDir, "back-to-top"));
        const hugeLog = path.join(docs.dir, "huge.log");
        const handle = await open(hugeLog, "w");
        await handle.truncate(2 * 1024 ** 3);
        await handle.close();

        const {summary} = await ingest(engine, docs.dir);
        assert.ok(summary.errors.some((problem) => problem.path.endsWith("back-to-top") && /loop/.test(problem.reason)), JSON.stringify(summary.errors));
        assert.ok(summary.skipped.some((problem) => problem.path === hugeLog && /too large/.test(problem.reason)));
        assert.ok(summary.files >= 6);
    });

    it("answers with citations that point into the indexed files", async () => {
        const events = await collectEvents(engine.chat(ChatRequest.parse({question: "Where did Quetzalcoatl migrate?", maxTokens: 8}), new AbortController().signal));
        const retrieval = events.find((event) => event.type === "retrieval");
        assert.ok(retrieval != null && retrieval.type === "retrieval");
        const done = lastEvent(events, "done");
        assert.ok(done.citations.length > 0);
        assert.equal(done.citations[0]!.path, docs.text);
        assert.equal(done.citations[0]!.n, 1);
        assert.deepEqual(done.citations, retrieval.citations);
        assert.ok(done.stats.promptTokens > 20, "the sources are in the prompt");
        assert.equal(done.stats.reusedTokens + done.stats.recomputedTokens + done.stats.freshTokens, done.stats.promptTokens);
    });

    it("keeps the index when the folder disappears, and says why", async () => {
        const events = await collectEvents(engine.ingestFolder({path: path.join(temp.dir, "no-such-folder")}, new AbortController().signal) as never);
        const last = events.at(-1) as unknown as {type: string, error: {code: string}};
        assert.equal(last.type, "error");
        assert.equal(last.error.code, "not_found");
        assert.ok((await search(dataDir, "Quetzalcoatl")).length > 0);
    });
});

describe("ingestion survives being killed mid-run", () => {
    let temp: Awaited<ReturnType<typeof makeTempDir>>;

    before(async () => {
        temp = await makeTempDir();
    });

    after(async () => {
        await temp.cleanup();
    });

    it("finishes the job on the next run with no duplicate and no missing chunk", async () => {
        const corpus = path.join(temp.dir, "corpus");
        await mkdir(corpus);
        const files = 600;
        for (let index = 0; index < files; index++)
            await writeFile(path.join(corpus, `note-${String(index).padStart(4, "0")}.md`),
                `# Note ${index}\n\nThis note mentions marker${index} and the harbour.\n\n${"Filler sentence about ships. ".repeat(20)}\n`);

        const child = (dataDir: string, killAfterFiles?: number) => new Promise<{killed: boolean, output: string}>((resolve, reject) => {
            const proc = spawn(process.execPath, ["--import", "tsx", path.join(here, "support", "ingest-child.ts"), dataDir, corpus],
                {stdio: ["ignore", "pipe", "inherit"]});
            let output = "";
            let killed = false;
            proc.stdout.on("data", (chunk: Buffer) => {
                output += chunk.toString();
                const done = [...output.matchAll(/progress (\d+)/g)].map((match) => Number(match[1]));
                if (killAfterFiles != null && !killed && done.some((count) => count >= killAfterFiles)) {
                    killed = true;
                    proc.kill("SIGKILL");
                }
            });
            proc.on("error", reject);
            proc.on("close", () => resolve({killed, output}));
        });

        const crashedDir = path.join(temp.dir, "crashed");
        const first = await child(crashedDir, 200);
        assert.equal(first.killed, true, "the first run finished before it could be killed");
        const second = await child(crashedDir);
        const summary = IngestSummary.parse(JSON.parse(second.output.trim().split("\n").at(-1)!).summary);

        const cleanDir = path.join(temp.dir, "clean");
        const clean = await child(cleanDir);
        const cleanSummary = IngestSummary.parse(JSON.parse(clean.output.trim().split("\n").at(-1)!).summary);

        assert.equal(summary.files, files);
        assert.equal(summary.chunks, cleanSummary.chunks);
        assert.ok(summary.changedFiles < files, "the resumed run redid work the killed run had committed");

        const store = await LibraryStore.open(crashedDir);
        try {
            assert.equal(await store.countChunks(), cleanSummary.chunks);
            for (const probe of [0, 150, 599]) {
                const hits = (await store.searchText(`marker${probe}`, 5)).filter((hit) => hit.text.includes(`marker${probe} `));
                assert.equal(hits.length, 1, `marker${probe}: ${hits.length} chunks`);
            }
        } finally {
            store.close();
        }
    });
});
