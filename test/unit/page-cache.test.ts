import assert from "node:assert/strict";
import {mkdir, writeFile} from "node:fs/promises";
import path from "node:path";
import {after, before, describe, it} from "node:test";
import {PageCacheTools} from "../../bench/page-cache.js";
import {makeTempDir} from "../helpers/paths.js";

describe("the benchmarks' page-cache commands, run in one helper shell", () => {
    let temp: Awaited<ReturnType<typeof makeTempDir>>;
    let tools: PageCacheTools;

    before(async () => {
        temp = await makeTempDir();
        tools = PageCacheTools.start();
    });
    after(async () => {
        tools?.close();
        await temp?.cleanup();
    });

    it("evicts a folder's files, counts their bytes, and says what the page cache still holds", async (t) => {
        const dir = path.join(temp.dir, "chunks");
        await mkdir(dir);
        // a name a shell would split or expand unquoted
        const file = path.join(dir, "it's a $chunk.wkv");
        await writeFile(file, Buffer.alloc(1 << 20, 7));
        assert.equal(await tools.evict(dir), null);
        const {fileBytes, cachedBytes} = await tools.residency(dir);
        assert.equal(fileBytes, 1 << 20);
        const filesystem = await tools.filesystemOf(dir);
        t.diagnostic(`after eviction, ${cachedBytes ?? "unknown (no fincore)"} bytes cached on ${filesystem}`);
        if (cachedBytes != null && filesystem !== "tmpfs")
            assert.ok(cachedBytes < fileBytes, `still cached: ${cachedBytes} of ${fileBytes} bytes`);
    });

    it("answers commands in order, one at a time, and reports a failing one instead of throwing", async () => {
        const missing = path.join(temp.dir, "no such folder");
        const [empty, problem, again] = await Promise.all([
            tools.residency(missing),
            tools.filesystemOf(missing),
            tools.evict(temp.dir)
        ]);
        assert.deepEqual(empty, {fileBytes: 0, cachedBytes: 0});
        assert.equal(problem, "unknown");
        assert.equal(again, null);
    });
});
