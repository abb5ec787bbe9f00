import assert from "node:assert/strict";
import {mkdir, open, symlink, writeFile} from "node:fs/promises";
import path from "node:path";
import {after, before, describe, it} from "node:test";
import {IngestSummary} from "../../main/contract/index.js";
import {Engine} from "../../main/engine/engine.js";
import {LibraryStore} from "../../main/engine/library/store.js";
import {collectEvents} from "../helpers/collect.js";
import {makeTempDir} from "../helpers/paths.js";

type Last = {type: string, summary?: IngestSummary, error?: {code: string, message: string}};

async function ingest(engine: Engine, folder: string): Promise<Last> {
    const events = await collectEvents(engine.ingestFolder({path: folder}, new AbortController().signal) as never);
    return events.at(-1) as unknown as Last;
}

async function searchAll(dataDir: string, query: string) {
    const store = await LibraryStore.open(dataDir);
    try {
        return await store.searchText(query, 20);
    } finally {
        store.close();
    }
}

describe("folder policy: what a folder may be and what indexing follows", () => {
    let temp: Awaited<ReturnType<typeof makeTempDir>>;
    let dataDir: string;
    let engine: Engine;
    let docs: string;
    let outside: string;

    before(async () => {
        temp = await makeTempDir();
        dataDir = path.join(temp.dir, "data");
        docs = path.join(temp.dir, "docs");
        outside = path.join(temp.dir, "outside");
        await mkdir(docs);
        await mkdir(path.join(outside, "dir"), {recursive: true});
        await writeFile(path.join(docs, "inside.txt"), "The lighthouse keeper counted gulls every morning.");
        await writeFile(path.join(outside, "secret.txt"), "zanzibar passphrase hunter2 never to be indexed");
        await writeFile(path.join(outside, "dir", "more.txt"), "quokka confidential payroll figures");
        await symlink(path.join(outside, "secret.txt"), path.join(docs, "link-to-secret.txt"));
        await symlink(path.join(outside, "dir"), path.join(docs, "link-to-dir"));
        // A link that stays inside the folder is still followed.
        await mkdir(path.join(docs, "real"));
        await writeFile(path.join(docs, "real", "note.txt"), "Albatross sightings were rare that winter.");
        await symlink(path.join(docs, "real"), path.join(docs, "alias"));
        engine = await Engine.open({dataDir, threads: 1, gpu: false});
    });

    after(async () => {
        await engine.close();
        await temp.cleanup();
    });

    it("refuses system folders, the data folder and relative paths with a clear error", async () => {
        for (const folder of ["/", "/etc", "/proc", "/proc/self", "/sys", "/dev", dataDir, path.join(dataDir, "library")]) {
            const last = await ingest(engine, folder);
            assert.equal(last.type, "error", folder);
            assert.equal(last.error?.code, "bad_request", folder);
            assert.match(last.error!.message, /system folder|data folder/, folder);
        }
        const relative = await ingest(engine, "docs");
        assert.equal(relative.type, "error");
        assert.match(relative.error!.message, /absolute/);
        assert.deepEqual(await engine.listFolders(), []);
    });

    it("does not follow symlinks that leave the folder, and lists them as skipped", async () => {
        const last = await ingest(engine, docs);
        assert.equal(last.type, "done", JSON.stringify(last));
        const summary = last.summary!;
        assert.deepEqual(summary.skipped.map((problem) => path.basename(problem.path)).sort(), ["link-to-dir", "link-to-secret.txt"]);
        assert.match(summary.skipped[0]!.reason, /outside the folder/);
        assert.deepEqual(await searchAll(dataDir, "zanzibar passphrase"), []);
        assert.deepEqual(await searchAll(dataDir, "quokka payroll"), []);
        assert.equal((await searchAll(dataDir, "albatross")).length, 1, "a link inside the folder is followed once");
        assert.equal((await searchAll(dataDir, "lighthouse")).length, 1);
    });

    it("stores file sizes exactly: a file over 16 MiB is not seen as changed on the next run", async () => {
        const big = path.join(docs, "huge.log");
        const handle = await open(big, "w");
        await handle.truncate(64 * 1024 * 1024 + 1);
        await handle.close();
        const first = await ingest(engine, docs);
        assert.equal(first.type, "done");
        assert.ok(first.summary!.skipped.some((problem) => problem.path === big && /too large/.test(problem.reason)));
        const second = await ingest(engine, docs);
        assert.equal(second.summary!.changedFiles, 0);
    });
});

describe("folder policy: following outside links when the setting allows it", () => {
    it("indexes a linked file outside the folder with followLinksOutsideFolder on", async () => {
        const temp = await makeTempDir();
        try {
            const dataDir = path.join(temp.dir, "data");
            const docs = path.join(temp.dir, "docs");
            await mkdir(docs);
            await mkdir(dataDir);
            await writeFile(path.join(temp.dir, "shared.txt"), "zanzibar shared notes");
            await symlink(path.join(temp.dir, "shared.txt"), path.join(docs, "shared.txt"));
            await writeFile(path.join(dataDir, "settings.json"), JSON.stringify({followLinksOutsideFolder: true}));
            const engine = await Engine.open({dataDir, threads: 1, gpu: false});
            try {
                const last = await ingest(engine, docs);
                assert.equal(last.type, "done");
                assert.deepEqual(last.summary!.skipped, []);
                assert.equal((await searchAll(dataDir, "zanzibar")).length, 1);
            } finally {
                await engine.close();
            }
        } finally {
            await temp.cleanup();
        }
    });
});

describe("document sizes in a library written before they were exact", () => {
    it("moves the Float32 size column to exact sizeBytes on open, keeping every row", async () => {
        const temp = await makeTempDir();
        try {
            const lancedb = await import("@lancedb/lancedb");
            const {Field, Float32, Int32, Schema, Utf8} = await import("apache-arrow");
            const db = await lancedb.connect(path.join(temp.dir, "library"));
            const text = ["path", "folderId", "contentHash", "mtimeMs", "type", "status", "reason", "updatedAt"];
            const oldSchema = new Schema([...text.map((name) => new Field(name, new Utf8(), false)),
                new Field("size", new Float32(), false), new Field("chunkCount", new Int32(), false)]);
            const old = await db.createEmptyTable("documents", oldSchema);
            await old.add([{path: "/docs/a.txt", folderId: "f", contentHash: "h", mtimeMs: "5", type: "txt", status: "indexed",
                reason: "", updatedAt: "", size: 1234, chunkCount: 1}]);
            db.close();

            const store = await LibraryStore.open(temp.dir);
            try {
                const rows = await store.documentsOf("f");
                assert.equal(rows.get("/docs/a.txt")?.size, 1234);
                await store.putDocumentRows([{...rows.get("/docs/a.txt")!, size: 64 * 1024 * 1024 + 1}]);
                assert.equal((await store.documentsOf("f")).get("/docs/a.txt")?.size, 64 * 1024 * 1024 + 1);
            } finally {
                store.close();
            }
        } finally {
            await temp.cleanup();
        }
    });
});
