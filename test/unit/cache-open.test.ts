// Cache files opened safely: what sits where a .wkv file should is read only if it is a regular file of the size its
// header promises, with this model's layout and cells at consecutive positions; anything else is a miss with a reason.
import assert from "node:assert/strict";
import {execFileSync} from "node:child_process";
import {randomBytes} from "node:crypto";
import {open, readdir, rm, symlink} from "node:fs/promises";
import path from "node:path";
import {afterEach, beforeEach, describe, it} from "node:test";
import {ChunkKvCache, type ChunkKey, wkvMagic, wkvFormatVersion} from "../../main/engine/kv/chunk-cache.js";
import {ggmlTypeF16, type KvBody} from "../../main/engine/kv/kv-blob.js";
import {makeTempDir} from "../helpers/paths.js";

function body(cells: number, options: {rowSize?: number, nLayer?: number, positions?: number[]} = {}): KvBody {
    const {rowSize = 32, nLayer = 2} = options;
    return {
        nStream: 1, stream: 0, vTrans: false,
        cells: Array.from({length: cells}, (_, index) => ({pos: options.positions?.[index] ?? index + 1, seqIds: [0]})),
        layers: Array.from({length: nLayer}, () => ({
            k: {type: ggmlTypeF16, rowSize, rows: new Uint8Array(randomBytes(cells * rowSize))},
            v: {type: ggmlTypeF16, rowSize, rows: new Uint8Array(randomBytes(cells * rowSize))}
        }))
    };
}

const fingerprint = "feedfacefeedfacefeedfacefeedface";
const key = (chunkHash: string): ChunkKey => ({fingerprint, chunkHash, promptFormatVersion: 1});
const tokens = (kv: KvBody) => kv.cells.map((_, index) => 7 + index);
const diskOnly = (dataDir: string) => ChunkKvCache.open({dataDir, ramBudgetBytes: 0, diskBudgetBytes: 1 << 30});

describe("chunk cache files opened safely", {timeout: 60_000}, () => {
    let temp: Awaited<ReturnType<typeof makeTempDir>>;

    beforeEach(async () => {
        temp = await makeTempDir();
    });

    afterEach(async () => {
        await temp.cleanup();
    });

    it("a FIFO named like a cache file is a miss at once (never a read that waits for a writer)", async () => {
        const cache = await diskOnly(temp.dir);
        await cache.put(key("aaaa"), {tokens: tokens(body(3)), body: body(3)});
        const fifo = cache.pathOf(key("bbbb"));
        execFileSync("mkfifo", [fifo]);
        const lookup = await cache.get(key("bbbb"));
        assert.equal(lookup.hit, false);
        assert.equal(!lookup.hit && lookup.reason, "not-a-file");
        assert.equal((await cache.get(key("aaaa"))).hit, true);
    });

    it("a cache file that is a symbolic link (to /dev/zero) is a miss, not an endless read", async () => {
        const cache = await diskOnly(temp.dir);
        await cache.put(key("aaaa"), {tokens: tokens(body(3)), body: body(3)});
        await symlink("/dev/zero", cache.pathOf(key("cccc")));
        const lookup = await cache.get(key("cccc"));
        assert.equal(!lookup.hit && lookup.reason, "not-a-file");
    });

    it("a huge file whose header promises a small body is refused by its size, before its body is read", async () => {
        const cache = await diskOnly(temp.dir);
        const kv = body(3);
        await cache.put(key("aaaa"), {tokens: tokens(kv), body: kv});
        const file = cache.pathOf(key("aaaa"));
        const handle = await open(file, "r+");
        await handle.truncate(1 << 30);
        await handle.close();
        const lookup = await (await diskOnly(temp.dir)).get(key("aaaa"));
        assert.equal(!lookup.hit && lookup.reason, "bad-sizes");
        assert.match(!lookup.hit ? lookup.detail : "", /header's shape needs/);
    });

    it("another model's KV re-keyed to this model, with a valid checksum, is a miss (wrong-layout) and is dropped", async () => {
        const cache = await diskOnly(temp.dir);
        const ours = body(4);
        await cache.put(key("aaaa"), {tokens: tokens(ours), body: ours});
        // A foreign cache (other layer count and row size), written by the cache itself under a scratch folder with our key.
        const foreignDir = path.join(temp.dir, "foreign");
        const foreign = await diskOnly(foreignDir);
        const theirs = body(4, {rowSize: 64, nLayer: 3});
        await foreign.put(key("dddd"), {tokens: tokens(theirs), body: theirs});
        await rm(path.join(foreignDir, "kvcache", fingerprint, "layout.json"));
        execFileSync("cp", [foreign.pathOf(key("dddd")), cache.pathOf(key("dddd"))]);

        const reopened = await diskOnly(temp.dir);
        const lookup = await reopened.get(key("dddd"));
        assert.equal(!lookup.hit && lookup.reason, "wrong-layout");
        assert.equal((await readdir(path.dirname(cache.pathOf(key("dddd"))))).includes("dddd.wkv"), false, "dropped");
        assert.equal((await reopened.get(key("aaaa"))).hit, true);
    });

    it("cells that are not at consecutive positions are a miss (bad-positions)", async () => {
        const cache = await diskOnly(temp.dir);
        const scrambled = body(3, {positions: [5, 3, 900]});
        await cache.put(key("eeee"), {tokens: tokens(scrambled), body: scrambled});
        const lookup = await (await diskOnly(temp.dir)).get(key("eeee"));
        assert.equal(!lookup.hit && lookup.reason, "bad-positions");
        assert.ok(wkvMagic.length === 8 && wkvFormatVersion >= 1);
    });
});
