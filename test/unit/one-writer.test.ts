import assert from "node:assert/strict";
import {type ChildProcess, spawn} from "node:child_process";
import {mkdir, readFile, writeFile} from "node:fs/promises";
import path from "node:path";
import {after, before, describe, it} from "node:test";
import * as lancedb from "@lancedb/lancedb";
import {Field, Int32, Schema, Utf8} from "apache-arrow";
import {IngestSummary} from "../../main/contract/index.js";
import {Engine} from "../../main/engine/engine.js";
import {retryCommit} from "../../main/engine/library/commit-retry.js";
import {collectEvents} from "../helpers/collect.js";
import {makeTempDir, repoRoot, stories260kPath, tinyRandomLlama2Path} from "../helpers/paths.js";

type Last = {type: string, summary?: IngestSummary, error?: {code: string, message: string}};

async function ingest(engine: Engine, folder: string): Promise<Last> {
    const events = await collectEvents(engine.ingestFolder({path: folder}, new AbortController().signal) as never);
    return events.at(-1) as unknown as Last;
}

/** Runs TypeScript in a child Node process (the sources, through tsx), as a second Weft process would. */
function tsxChild(args: string[]): ChildProcess & {output: Promise<{code: number | null, stdout: string, stderr: string}>} {
    const child = spawn(process.execPath, ["--import", "tsx", ...args], {cwd: repoRoot, stdio: ["ignore", "pipe", "pipe"],
        env: {...process.env, WEFT_THREADS: "1"}});
    let stdout = "";
    let stderr = "";
    child.stdout!.on("data", (chunk) => (stdout += chunk));
    child.stderr!.on("data", (chunk) => (stderr += chunk));
    const output = new Promise<{code: number | null, stdout: string, stderr: string}>((resolve) =>
        child.on("close", (code) => resolve({code, stdout, stderr})));
    return Object.assign(child, {output});
}

/** A child that takes the data folder's lock, prints "held", and keeps it until killed or `holdMs` passes. */
async function holdLockInChild(dataDir: string, holdMs: number) {
    const script = `import {DataDirLock} from ${JSON.stringify(path.join(repoRoot, "main/engine/data-lock.ts"))};
await DataDirLock.for(${JSON.stringify(dataDir)}).hold(async () => { console.log("held"); await new Promise((r) => setTimeout(r, ${holdMs})); });`;
    const child = tsxChild(["--input-type=module", "-e", script]);
    await new Promise<void>((resolve, reject) => {
        child.stdout!.on("data", (chunk) => String(chunk).includes("held") && resolve());
        child.once("close", () => reject(new Error("the lock holder exited early")));
    });
    return child;
}

async function chunkIds(dataDir: string): Promise<string[]> {
    const db = await lancedb.connect(path.join(dataDir, "library"));
    try {
        return ((await (await db.openTable("chunks")).query().select(["id"]).toArray()) as Array<{id: string}>).map((row) => row.id);
    } finally {
        db.close();
    }
}

describe("one writer per data folder", () => {
    let temp: Awaited<ReturnType<typeof makeTempDir>>;
    let docs: string;

    before(async () => {
        temp = await makeTempDir();
        docs = path.join(temp.dir, "docs");
        await mkdir(docs);
        for (let index = 0; index < 40; index++)
            await writeFile(path.join(docs, `note-${index}.md`), `# Note ${index}\n\n` +
                Array.from({length: 30}, (_, line) => `Line ${line} of note ${index} talks about harbour ${index * line}.`).join("\n"));
    });

    after(async () => {
        await temp.cleanup();
    });

    it("a second process says clearly that the library is in use, or waits for it and then succeeds", async () => {
        const dataDir = path.join(temp.dir, "busy");
        const holder = await holdLockInChild(dataDir, 60_000);
        const impatient = await Engine.open({dataDir, threads: 1, gpu: false, lockWait: {waitMs: 300}});
        try {
            const refused = await ingest(impatient, docs);
            assert.equal(refused.type, "error");
            assert.equal(refused.error?.code, "busy");
            assert.match(refused.error!.message, /in use by another Weft process .*pid \d+/);
        } finally {
            await impatient.close();
        }

        const waits: string[] = [];
        const patient = await Engine.open({dataDir, threads: 1, gpu: false, lockWait: {onWait: (message) => waits.push(message)}});
        try {
            const running = ingest(patient, docs);
            await new Promise((resolve) => setTimeout(resolve, 500));
            holder.kill("SIGTERM");
            const done = await running;
            assert.equal(done.type, "done", JSON.stringify(done));
            assert.equal(waits.length, 1);
            assert.match(waits[0]!, /^waiting: the library .* is in use/);
        } finally {
            await patient.close();
        }
    });

    it("takes over a lock left by a process killed with SIGKILL", async () => {
        const dataDir = path.join(temp.dir, "stale");
        const holder = await holdLockInChild(dataDir, 60_000);
        holder.kill("SIGKILL");
        await holder.output;
        const engine = await Engine.open({dataDir, threads: 1, gpu: false, lockWait: {waitMs: 2000}});
        try {
            assert.equal((await ingest(engine, docs)).type, "done");
        } finally {
            await engine.close();
        }
    });

    it("two ingests of one folder at once, in two processes, leave every chunk exactly once", async () => {
        const dataDir = path.join(temp.dir, "twice");
        const run = () => tsxChild(["main/cli/weft.ts", "ingest", docs, "--data", dataDir, "--json"]).output;
        const results = await Promise.all([run(), run()]);
        for (const result of results)
            assert.equal(result.code, 0, result.stderr);

        const ids = await chunkIds(dataDir);
        assert.ok(ids.length > 0);
        assert.equal(new Set(ids).size, ids.length, "no chunk is stored twice");
        const summary = IngestSummary.parse(JSON.parse(results[0]!.stdout.trim().split("\n").at(-1)!));
        assert.equal(summary.files, 40);
    });

    it("an ingest repairs chunks stored twice by an earlier double ingest", async () => {
        const dataDir = path.join(temp.dir, "repair");
        const engine = await Engine.open({dataDir, threads: 1, gpu: false});
        try {
            assert.equal((await ingest(engine, docs)).type, "done");
            const clean = await chunkIds(dataDir);
            const db = await lancedb.connect(path.join(dataDir, "library"));
            const chunks = await db.openTable("chunks");
            await chunks.add(await chunks.query().where("path LIKE '%note-1%'").toArray());
            db.close();
            assert.ok((await chunkIds(dataDir)).length > clean.length);

            const again = await ingest(engine, docs);
            assert.equal(again.type, "done");
            const repaired = await chunkIds(dataDir);
            assert.deepEqual([...repaired].sort(), [...clean].sort());
        } finally {
            await engine.close();
        }
    });

    it("a model added by another process is kept when this one saves the registry and settings", async () => {
        const dataDir = path.join(temp.dir, "registry");
        const serve = await Engine.open({dataDir, threads: 1, gpu: false});
        const cli = await Engine.open({dataDir, threads: 1, gpu: false});
        try {
            await cli.addModel({path: stories260kPath});
            await serve.addModel({path: tinyRandomLlama2Path});
            const saved = JSON.parse(await readFile(path.join(dataDir, "models.json"), "utf8")) as {models: Array<{path: string}>};
            assert.deepEqual(saved.models.map((model) => model.path).sort(), [stories260kPath, tinyRandomLlama2Path].sort());
            assert.equal((await serve.listModels()).length, 2);
        } finally {
            await serve.close();
            await cli.close();
        }
    });

    it("two models added at the same moment by one process are both kept", async () => {
        // The lock is shared within a process: two additions used to refresh the registry together and each save it
        // without the other's model.
        const dataDir = path.join(temp.dir, "registry-at-once");
        const engine = await Engine.open({dataDir, threads: 1, gpu: false});
        try {
            await Promise.all([engine.addModel({path: stories260kPath}), engine.addModel({path: tinyRandomLlama2Path})]);
            const saved = JSON.parse(await readFile(path.join(dataDir, "models.json"), "utf8")) as {models: Array<{path: string}>};
            assert.deepEqual(saved.models.map((model) => model.path).sort(), [stories260kPath, tinyRandomLlama2Path].sort());
            assert.equal((await engine.listModels()).length, 2);
        } finally {
            await engine.close();
        }
    });

    it("retries a LanceDB commit that lost a race with another connection", async () => {
        const dir = path.join(temp.dir, "conflict");
        const schema = new Schema([new Field("text", new Utf8(), false), new Field("n", new Int32(), false)]);
        // As LibraryStore connects: every operation starts from the latest version, so a retry is not stale.
        const first = await lancedb.connect(dir, {readConsistencyInterval: 0});
        const second = await lancedb.connect(dir, {readConsistencyInterval: 0});
        try {
            const a = await first.createEmptyTable("t", schema);
            await a.add([{text: "harbour lights", n: 1}]);
            const b = await second.openTable("t");
            const work = (table: lancedb.Table) => (async () => {
                for (let round = 0; round < 6; round++) {
                    await retryCommit(() => table.createIndex("text", {config: lancedb.Index.fts({withPosition: false}), replace: true}));
                    await retryCommit(() => table.optimize());
                }
            })();
            await Promise.all([work(a), work(b)]);
            assert.equal(await a.countRows(), 1);
        } finally {
            first.close();
            second.close();
        }
    });
});
