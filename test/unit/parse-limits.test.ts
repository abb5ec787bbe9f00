import assert from "node:assert/strict";
import {mkdir, writeFile} from "node:fs/promises";
import path from "node:path";
import {after, before, describe, it} from "node:test";
import {ingestFolder} from "../../main/engine/library/ingest.js";
import {estimateTokenizer} from "../../main/engine/library/library.js";
import {LibraryStore} from "../../main/engine/library/store.js";
import {writeDeepHtml, writeParagraphBombDocx, writeRunBombDocx, writeStreamBombPdf} from "../fixtures/bombs.js";
import {makeTempDir} from "../helpers/paths.js";

const MiB = 1024 * 1024;

describe("parsing is isolated and bounded (generated bombs, real ingest, real LanceDB)", () => {
    let temp: Awaited<ReturnType<typeof makeTempDir>>;
    let store: LibraryStore;
    let dataDir: string;

    before(async () => {
        temp = await makeTempDir();
        dataDir = path.join(temp.dir, "data");
        store = await LibraryStore.open(dataDir);
    });

    after(async () => {
        store.close();
        await temp.cleanup();
    });

    const ingest = (folder: string, extra: Partial<Parameters<typeof ingestFolder>[2]> = {}) => ingestFolder(store, folder, {
        dataDir, countTokens: estimateTokenizer.countTokens, tokenizer: "estimate", ...extra
    });

    const goodFile = async (folder: string) => {
        await mkdir(folder, {recursive: true});
        await writeFile(path.join(folder, "good.md"), "# Harbour\n\nThe harbour master logged every ship that entered the bay.");
    };

    it("lists a DOCX part and a PDF stream that expand past the limit as errors; the rest of the batch commits", async () => {
        const folder = path.join(temp.dir, "inflate");
        await goodFile(folder);
        const docxBytes = await writeRunBombDocx(path.join(folder, "run.docx"), 200 * MiB);
        const pdfBytes = await writeStreamBombPdf(path.join(folder, "stream.pdf"), 200 * MiB);
        assert.ok(docxBytes < 2 * MiB && pdfBytes < 2 * MiB, "the bombs are small files");

        const summary = await ingest(folder);
        const reasons = new Map(summary.errors.map((problem) => [path.basename(problem.path), problem.reason]));
        assert.match(reasons.get("run.docx") ?? "", /word\/document\.xml expands past 128 MiB/);
        assert.match(reasons.get("stream.pdf") ?? "", /PDF stream .* expands past 128 MiB/);
        assert.equal(summary.files, 1);
        assert.equal((await store.searchText("harbour master", 5)).length, 1);
    });

    it("stops a parse at the worker's heap limit (the child's limit is hit) and lists the file", async () => {
        const folder = path.join(temp.dir, "heap");
        await goodFile(folder);
        // 24 MiB of tiny paragraphs: within the size limits, but mammoth's tree of it needs far more than 48 MiB of heap.
        await writeParagraphBombDocx(path.join(folder, "paragraphs.docx"), 24 * MiB);
        const summary = await ingest(folder, {parseHeapMb: 48});
        assert.deepEqual(summary.errors.map((problem) => path.basename(problem.path)), ["paragraphs.docx"]);
        assert.match(summary.errors[0]!.reason, /ran out of memory while parsing \(over the 48 MiB limit/);
        assert.equal(summary.files, 1);
    });

    it("stops a file at its wall-clock limit while the engine's thread stays free", async () => {
        const folder = path.join(temp.dir, "deep");
        await goodFile(folder);
        await writeDeepHtml(path.join(folder, "deep.html"), 80_000);
        let ticks = 0;
        const ticker = setInterval(() => ticks++, 20);
        try {
            const summary = await ingest(folder, {parse: {timeoutMs: 1000}});
            assert.deepEqual(summary.errors.map((problem) => path.basename(problem.path)), ["deep.html"]);
            assert.match(summary.errors[0]!.reason, /timed out after 1 s/);
            assert.equal(summary.files, 1);
        } finally {
            clearInterval(ticker);
        }
        assert.ok(ticks >= 10, `the main thread kept running timers during the parse (${ticks} ticks)`);
    });

    it("a cancelled ingest stops the file being parsed instead of waiting for it", async () => {
        const folder = path.join(temp.dir, "cancel");
        await mkdir(folder, {recursive: true});
        await writeDeepHtml(path.join(folder, "deep.html"), 80_000);
        const controller = new AbortController();
        setTimeout(() => controller.abort(), 300);
        const summary = await ingest(folder, {signal: controller.signal});
        assert.equal(summary.cancelled, true);
        assert.deepEqual(summary.errors, [], "a cancelled file is not recorded as broken");
    });
});
