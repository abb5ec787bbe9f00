import assert from "node:assert/strict";
import {mkdir, rename, rm, writeFile} from "node:fs/promises";
import path from "node:path";
import {after, before, describe, it} from "node:test";
import {Engine} from "../../main/engine/engine.js";
import {LibraryStore} from "../../main/engine/library/store.js";
import {collectEvents} from "../helpers/collect.js";
import {makeTempDir, testThreads} from "../helpers/paths.js";

async function pathsMatching(dataDir: string, query: string): Promise<string[]> {
    const store = await LibraryStore.open(dataDir);
    try {
        return [...new Set((await store.searchText(query, 10)).map((hit) => hit.path))].sort();
    } finally {
        store.close();
    }
}

async function eventually(check: () => Promise<boolean>, what: string, timeoutMs = 20_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!(await check())) {
        if (Date.now() > deadline)
            throw new Error(`timed out waiting until ${what}`);

        await new Promise((resolve) => setTimeout(resolve, 150));
    }
}

describe("watched folders stay indexed while the engine runs", () => {
    let temp: Awaited<ReturnType<typeof makeTempDir>>;
    let folder: string;
    let dataDir: string;
    let engine: Engine;
    const log: string[] = [];

    before(async () => {
        temp = await makeTempDir();
        folder = path.join(temp.dir, "notes");
        dataDir = path.join(temp.dir, "data");
        await mkdir(folder);
        await writeFile(path.join(folder, "first.md"), "# First\n\nThe albatross circles the harbour.\n");
        engine = await Engine.open({dataDir, threads: testThreads, gpu: false});
        await collectEvents(engine.ingestFolder({path: folder}, new AbortController().signal) as never);
        await engine.close();

        // Changes made while Weft was closed are found at the next start.
        await writeFile(path.join(folder, "offline.md"), "# Offline\n\nA narwhal appeared while nobody was watching.\n");
        engine = await Engine.open({dataDir, threads: testThreads, gpu: false});
        await engine.maintainLibrary((line) => log.push(line));
    });

    after(async () => {
        await engine.close();
        await temp.cleanup();
    });

    it("reconciles changes made while closed", async () => {
        assert.deepEqual(await pathsMatching(dataDir, "narwhal"), [path.join(folder, "offline.md")]);
    });

    it("indexes a created file, a changed file, a rename and a delete", async () => {
        const created = path.join(folder, "created.md");
        await writeFile(created, "# Created\n\nThe pelican arrived on Tuesday.\n");
        await eventually(async () => (await pathsMatching(dataDir, "pelican")).includes(created), "the new file is searchable");

        await writeFile(created, "# Created\n\nThe cormorant replaced the pelican story.\n");
        await eventually(async () => (await pathsMatching(dataDir, "cormorant")).includes(created), "the change is searchable");

        const renamed = path.join(folder, "renamed.md");
        await rename(created, renamed);
        await eventually(async () => {
            const paths = await pathsMatching(dataDir, "cormorant");
            return paths.length === 1 && paths[0] === renamed;
        }, "the rename is reflected");

        await rm(renamed);
        await eventually(async () => (await pathsMatching(dataDir, "cormorant")).length === 0, "the deleted file is gone");
        assert.deepEqual(await pathsMatching(dataDir, "albatross"), [path.join(folder, "first.md")]);
        assert.ok(log.some((line) => /re-indexed/.test(line)), log.join("\n"));
    });
});
