// The chunk KV cache without a model: synthetic KV bodies through the RAM and disk tiers, LRU eviction by byte
// budget, and every kind of damaged file detected, dropped and reported while the cache keeps serving other keys.
import assert from "node:assert/strict";
import {createHash, randomBytes} from "node:crypto";
import {copyFile, mkdir, readdir, readFile, stat, truncate, utimes, writeFile} from "node:fs/promises";
import path from "node:path";
import {afterEach, beforeEach, describe, it} from "node:test";
import {
    ChunkKvCache, type ChunkKey, type ChunkKvLookup, modelFingerprint, wkvFormatVersion, wkvMagic
} from "../../main/engine/kv/chunk-cache.js";
import {ggmlTypeF16, type KvBody, serializeKvBody} from "../../main/engine/kv/kv-blob.js";
import {makeTempDir} from "../helpers/paths.js";

/** A KV body shaped like a small f16 model's: `nLayer` layers, K rows of `rowSize` bytes, V plain or transposed. */
function syntheticBody(cells: number, options: {vTrans?: boolean, nLayer?: number, rowSize?: number, nStream?: number} = {}): KvBody {
    const {vTrans = true, nLayer = 3, rowSize = 32, nStream = 1} = options;
    return {
        nStream, stream: 0, vTrans,
        cells: Array.from({length: cells}, (_, pos) => ({pos, seqIds: [0]})),
        layers: Array.from({length: nLayer}, () => ({
            k: {type: ggmlTypeF16, rowSize, rows: new Uint8Array(randomBytes(cells * rowSize))},
            v: vTrans
                ? {type: ggmlTypeF16, elemSize: 2, nEmbd: rowSize / 2, data: new Uint8Array(randomBytes(cells * rowSize))}
                : {type: ggmlTypeF16, rowSize, rows: new Uint8Array(randomBytes(cells * rowSize))}
        }))
    };
}

const fingerprint = "0123456789abcdef0123456789abcdef";
const otherLayoutFingerprint = "0123456789abcdef0123456789abcde0";
const key = (chunkHash: string, overrides: Partial<ChunkKey> = {}): ChunkKey => ({fingerprint, chunkHash, promptFormatVersion: 1, ...overrides});
const tokensFor = (body: KvBody) => body.cells.map((_, i) => 100 + i);

function assertHit(lookup: ChunkKvLookup, tier: "ram" | "disk", body: KvBody, tokens: number[]): void {
    assert.ok(lookup.hit, `expected a ${tier} hit, got ${JSON.stringify(lookup)}`);
    assert.equal(lookup.tier, tier);
    assert.deepEqual(Array.from(lookup.tokens), tokens);
    assert.deepEqual(Buffer.from(serializeKvBody(lookup.body)), Buffer.from(serializeKvBody(body)));
}

function assertMiss(lookup: ChunkKvLookup, reason: string): void {
    assert.equal(lookup.hit, false, `expected a miss (${reason})`);
    assert.equal(lookup.reason, reason, lookup.detail);
    assert.ok(lookup.detail.length > 0);
}

/** Rewrites a .wkv file with `edit` applied to its JSON header and a valid checksum, as a buggy writer would. */
async function rewriteHeader(file: string, edit: (header: Record<string, unknown>) => void): Promise<void> {
    const bytes = await readFile(file);
    const headerLength = bytes.readUInt32LE(12);
    const header = JSON.parse(bytes.subarray(16, 16 + headerLength).toString("utf8")) as Record<string, unknown>;
    const body = bytes.subarray(16 + headerLength, bytes.byteLength - 32);
    edit(header);
    const headerBytes = Buffer.from(JSON.stringify(header));
    const prefix = Buffer.alloc(16);
    wkvMagic.copy(prefix);
    prefix.writeUInt32LE(wkvFormatVersion, 8);
    prefix.writeUInt32LE(headerBytes.byteLength, 12);
    const digest = createHash("sha256").update(headerBytes).update(body).digest();
    await writeFile(file, Buffer.concat([prefix, headerBytes, body, digest]));
}

let temp: Awaited<ReturnType<typeof makeTempDir>>;
beforeEach(async () => {
    temp = await makeTempDir("weft-kvcache-");
});
afterEach(() => temp.cleanup());

describe("chunk KV cache round trips", () => {
    it("serves a chunk from RAM, then from disk after RAM is emptied, then from RAM again", async () => {
        const cache = await ChunkKvCache.open({dataDir: temp.dir, ramBudgetBytes: 1 << 20, diskBudgetBytes: 1 << 20});
        // One model folder holds one KV layout (wkv-open.ts checks it), so the two V orientations are two models here.
        const fingerprintOf = (vTrans: boolean) => vTrans ? fingerprint : otherLayoutFingerprint;
        for (const vTrans of [true, false]) {
            const body = syntheticBody(7, {vTrans});
            const tokens = tokensFor(body);
            const k = key(vTrans ? "aaaa" : "bbbb", {fingerprint: fingerprintOf(vTrans)});
            assert.deepEqual(await cache.put(k, {tokens, body}), {ram: true, disk: true});
            assert.ok((await stat(cache.pathOf(k))).isFile());
            assert.equal(cache.pathOf(k), path.join(temp.dir, "kvcache", fingerprintOf(vTrans), `${k.chunkHash}.wkv`));

            assertHit(await cache.get(k), "ram", body, tokens);
            cache.clearRam();
            assertHit(await cache.get(k), "disk", body, tokens);
            assertHit(await cache.get(k), "ram", body, tokens);
        }
        const stats = cache.stats();
        assert.equal(stats.ram.hits, 4);
        assert.equal(stats.disk.hits, 2);
        assert.equal(stats.ram.misses, 2);
        assert.equal(stats.disk.writes, 2);
        assert.equal(stats.disk.entries, 2);
        assert.equal(stats.droppedCorrupt, 0);
        // No temp file is left behind by the write-then-rename.
        const written = [...await readdir(path.join(temp.dir, "kvcache", fingerprint)), ...await readdir(path.join(temp.dir, "kvcache", otherLayoutFingerprint))];
        assert.deepEqual(written.filter((name) => name !== "layout.json").sort(), ["aaaa.wkv", "bbbb.wkv"]);
    });

    it("keeps its own copy: changing the caller's arrays after put does not change the cache", async () => {
        const cache = await ChunkKvCache.open({dataDir: temp.dir, ramBudgetBytes: 1 << 20, diskBudgetBytes: 0});
        const body = syntheticBody(4);
        const expected = serializeKvBody(body);
        await cache.put(key("cccc"), {tokens: tokensFor(body), body});
        body.layers[0]!.k.rows.fill(0);
        const hit = await cache.get(key("cccc"));
        assert.ok(hit.hit);
        assert.deepEqual(Buffer.from(serializeKvBody(hit.body)), Buffer.from(expected));
    });

    it("writes the file later without touching RAM (ram: leave), where ram: false drops the RAM copy", async () => {
        const cache = await ChunkKvCache.open({dataDir: temp.dir, ramBudgetBytes: 1 << 20, diskBudgetBytes: 1 << 20});
        const body = syntheticBody(6);
        const tokens = tokensFor(body);
        assert.deepEqual(await cache.put(key("abab"), {tokens, body}, {disk: false}), {ram: true, disk: false});
        await assert.rejects(stat(cache.pathOf(key("abab"))), "no file yet");
        assert.deepEqual(await cache.put(key("abab"), {tokens, body}, {ram: "leave"}), {ram: true, disk: true});
        assert.ok((await stat(cache.pathOf(key("abab")))).isFile());
        assertHit(await cache.get(key("abab")), "ram", body, tokens);
        assert.equal(cache.stats().ram.entries, 1);
        // Not in RAM: leave does not add it.
        assert.deepEqual(await cache.put(key("cdcd"), {tokens, body}, {ram: "leave"}), {ram: false, disk: true});
        assert.equal(cache.stats().ram.entries, 1);
        await cache.put(key("abab"), {tokens, body}, {ram: false});
        assert.equal(cache.stats().ram.entries, 0);
        assertHit(await cache.get(key("abab")), "disk", body, tokens);
    });

    it("finds what an earlier instance stored on disk", async () => {
        const body = syntheticBody(5);
        const first = await ChunkKvCache.open({dataDir: temp.dir, ramBudgetBytes: 1 << 20, diskBudgetBytes: 1 << 20});
        await first.put(key("dddd"), {tokens: tokensFor(body), body});
        const second = await ChunkKvCache.open({dataDir: temp.dir, ramBudgetBytes: 1 << 20, diskBudgetBytes: 1 << 20});
        assert.equal(second.stats().disk.entries, 1);
        assert.equal(second.stats().disk.bytes, (await stat(first.pathOf(key("dddd")))).size);
        assertHit(await second.get(key("dddd")), "disk", body, tokensFor(body));
        assertMiss(await second.get(key("eeee")), "absent");
    });

    it("rejects a body whose token count does not match its cells, and keys that are not file names", async () => {
        const cache = await ChunkKvCache.open({dataDir: temp.dir, ramBudgetBytes: 1 << 20, diskBudgetBytes: 1 << 20});
        const body = syntheticBody(3);
        await assert.rejects(cache.put(key("ffff"), {tokens: [1, 2], body}), /2 tokens for 3 KV cells/);
        await assert.rejects(cache.put(key("../escape"), {tokens: tokensFor(body), body}), /not a safe file name/);
        assertMiss(await cache.get(key("../escape")), "bad-key");
        assertMiss(await cache.get(key("ok", {fingerprint: "a/b"})), "bad-key");
    });
});

describe("chunk KV cache LRU eviction by byte budget", () => {
    it("evicts the least recently used entry from RAM", async () => {
        const body = () => syntheticBody(8); // 3 layers x 2 tensors x 8 cells x 32 bytes + meta
        const sample = body();
        const entryBytes = serializeKvBody(sample).byteLength + 4 * 8;
        const cache = await ChunkKvCache.open({dataDir: temp.dir, ramBudgetBytes: 2 * entryBytes + 10, diskBudgetBytes: 0});
        const a = body(), b = body(), c = body();
        await cache.put(key("a1"), {tokens: tokensFor(a), body: a});
        await cache.put(key("b1"), {tokens: tokensFor(b), body: b});
        assert.equal(cache.stats().ram.bytes, 2 * entryBytes);
        assert.ok((await cache.get(key("a1"))).hit); // a is now more recent than b
        await cache.put(key("c1"), {tokens: tokensFor(c), body: c});

        assertMiss(await cache.get(key("b1")), "absent");
        assertHit(await cache.get(key("a1")), "ram", a, tokensFor(a));
        assertHit(await cache.get(key("c1")), "ram", c, tokensFor(c));
        const stats = cache.stats();
        assert.equal(stats.ram.evictions, 1);
        assert.equal(stats.ram.entries, 2);
        assert.ok(stats.ram.bytes <= stats.ram.budgetBytes);

        // An entry larger than the whole budget is not kept in RAM at all.
        const huge = syntheticBody(64);
        assert.deepEqual(await cache.put(key("h1"), {tokens: tokensFor(huge), body: huge}), {ram: false, disk: false});
        assert.equal(cache.stats().ram.entries, 2);
    });

    it("evicts the least recently used file from disk, and evicts down to a smaller budget on open", async () => {
        const sample = syntheticBody(8);
        const put = async (cache: ChunkKvCache, name: string) => {
            const body = syntheticBody(8);
            await cache.put(key(name), {tokens: tokensFor(body), body});
            return body;
        };
        const probe = await ChunkKvCache.open({dataDir: path.join(temp.dir, "probe"), ramBudgetBytes: 0, diskBudgetBytes: 1 << 20});
        await probe.put(key("p2"), {tokens: tokensFor(sample), body: sample}); // same name length: same file size
        const fileBytes = (await stat(probe.pathOf(key("p2")))).size;

        const cache = await ChunkKvCache.open({dataDir: temp.dir, ramBudgetBytes: 0, diskBudgetBytes: 2 * fileBytes + 10});
        const a = await put(cache, "a2");
        await put(cache, "b2");
        assert.ok((await cache.get(key("a2"))).hit);
        const c = await put(cache, "c2");

        await assert.rejects(stat(cache.pathOf(key("b2"))), {code: "ENOENT"});
        assertMiss(await cache.get(key("b2")), "absent");
        assertHit(await cache.get(key("a2")), "disk", a, tokensFor(a));
        assertHit(await cache.get(key("c2")), "disk", c, tokensFor(c));
        assert.equal(cache.stats().disk.evictions, 1);
        assert.equal(cache.stats().disk.bytes, (await stat(cache.pathOf(key("a2")))).size + (await stat(cache.pathOf(key("c2")))).size);

        // Last access survives a restart through the file's mtime: make c2 the older one, then reopen smaller.
        await utimes(cache.pathOf(key("c2")), new Date(Date.now() - 60_000), new Date(Date.now() - 60_000));
        const smaller = await ChunkKvCache.open({dataDir: temp.dir, ramBudgetBytes: 0, diskBudgetBytes: fileBytes + 10});
        assert.equal(smaller.stats().disk.entries, 1);
        assert.equal(smaller.stats().disk.evictions, 1);
        assertMiss(await smaller.get(key("c2")), "absent");
        assertHit(await smaller.get(key("a2")), "disk", a, tokensFor(a));
    });

    it("removes a crashed writer's old temp files on open but leaves a fresh one alone", async () => {
        const dir = path.join(temp.dir, "kvcache", fingerprint);
        await mkdir(dir, {recursive: true});
        const stale = path.join(dir, "x.wkv.1.abcd.tmp"), fresh = path.join(dir, "y.wkv.2.abcd.tmp");
        await writeFile(stale, "partial");
        await writeFile(fresh, "partial");
        await utimes(stale, new Date(Date.now() - 7200_000), new Date(Date.now() - 7200_000));
        await ChunkKvCache.open({dataDir: temp.dir, ramBudgetBytes: 0, diskBudgetBytes: 1 << 20});
        assert.deepEqual(await readdir(dir), ["y.wkv.2.abcd.tmp"]);
    });
});

describe("chunk KV cache damaged files", () => {
    type Damage = {name: string, reason: string, damage(file: string, cache: ChunkKvCache): Promise<ChunkKey | void>};
    const damages: Damage[] = [
        {
            name: "wrong format version", reason: "wrong-version",
            damage: async (file) => {
                const bytes = await readFile(file);
                bytes.writeUInt32LE(wkvFormatVersion + 1, 8);
                await writeFile(file, bytes);
            }
        },
        {
            name: "bad magic", reason: "bad-magic",
            damage: async (file) => {
                const bytes = await readFile(file);
                bytes.write("NOTAKV", 0, "latin1");
                await writeFile(file, bytes);
            }
        },
        {name: "truncated file", reason: "truncated", damage: async (file) => truncate(file, (await stat(file)).size - 100)},
        {name: "truncated inside the header", reason: "truncated", damage: async (file) => truncate(file, 40)},
        {name: "empty file", reason: "truncated", damage: async (file) => truncate(file, 0)},
        {
            name: "flipped byte in the body", reason: "checksum",
            damage: async (file) => {
                const bytes = await readFile(file);
                bytes[bytes.byteLength - 100]! ^= 0x10;
                await writeFile(file, bytes);
            }
        },
        {
            name: "flipped byte in the checksum", reason: "checksum",
            damage: async (file) => {
                const bytes = await readFile(file);
                bytes[bytes.byteLength - 1]! ^= 0x01;
                await writeFile(file, bytes);
            }
        },
        {
            name: "bytes appended", reason: "bad-sizes",
            damage: async (file) => writeFile(file, Buffer.concat([await readFile(file), Buffer.alloc(16)]))
        },
        {
            name: "header row size that does not match the body", reason: "bad-sizes",
            damage: (file) => rewriteHeader(file, (header) => {
                (header.layers as {k: number[]}[])[0]!.k[1] = 64;
            })
        },
        {
            name: "header token count that does not match the body", reason: "bad-sizes",
            damage: (file) => rewriteHeader(file, (header) => {
                header.tokens = [1, 2];
                header.nTokens = 2;
            })
        },
        {
            name: "header body size larger than the file", reason: "truncated",
            damage: (file) => rewriteHeader(file, (header) => {
                header.bodyBytes = (header.bodyBytes as number) + 8;
            })
        },
        {name: "header that is not JSON", reason: "bad-header", damage: (file) => rewriteHeader(file, () => {}).then(async () => {
            const bytes = await readFile(file);
            bytes.write("#", 16, "latin1");
            await writeFile(file, bytes);
        })},
        {
            name: "header of another prompt format", reason: "wrong-prompt-format",
            damage: (file) => rewriteHeader(file, (header) => {
                header.promptFormatVersion = "0";
            })
        },
        {
            name: "file of another model under this model's folder", reason: "wrong-model",
            damage: async (file, cache) => {
                const other = key("9999", {fingerprint: "fedcba9876543210fedcba9876543210"});
                const body = syntheticBody(6);
                await cache.put(other, {tokens: tokensFor(body), body}, {ram: false});
                await copyFile(cache.pathOf(other), file);
            }
        },
        {
            name: "file of another chunk under this chunk's name", reason: "wrong-chunk",
            damage: async (file, cache) => {
                const body = syntheticBody(6);
                await cache.put(key("8888"), {tokens: tokensFor(body), body}, {ram: false});
                await copyFile(cache.pathOf(key("8888")), file);
            }
        },
        {
            name: "valid checksum over a body that does not parse", reason: "bad-body",
            damage: async (file) => {
                const bytes = await readFile(file);
                const headerLength = bytes.readUInt32LE(12);
                bytes.writeUInt32LE(0, 16 + headerLength); // n_stream 0
                await writeFile(file, bytes);
                await rewriteHeader(file, () => {});
            }
        }
    ];

    for (const {name, reason, damage} of damages) {
        it(`detects a ${name} (${reason}), deletes the file and keeps serving other keys`, async () => {
            const cache = await ChunkKvCache.open({dataDir: temp.dir, ramBudgetBytes: 1 << 20, diskBudgetBytes: 1 << 20});
            const victim = syntheticBody(6), healthy = syntheticBody(6);
            await cache.put(key("1111"), {tokens: tokensFor(victim), body: victim});
            await cache.put(key("2222"), {tokens: tokensFor(healthy), body: healthy});
            const file = cache.pathOf(key("1111"));
            await damage(file, cache);
            cache.clearRam();

            const lookup = await cache.get(key("1111"));
            assertMiss(lookup, reason);
            await assert.rejects(stat(file), {code: "ENOENT"}, "a damaged file is deleted");
            const stats = cache.stats();
            assert.equal(stats.droppedCorrupt, 1);
            assert.deepEqual(stats.dropReasons, {[reason]: 1});
            assert.equal(stats.disk.misses, 1);

            // The next lookup is a plain miss; the other key and new writes still work.
            assertMiss(await cache.get(key("1111")), "absent");
            assertHit(await cache.get(key("2222")), "disk", healthy, tokensFor(healthy));
            await cache.put(key("1111"), {tokens: tokensFor(victim), body: victim});
            cache.clearRam();
            assertHit(await cache.get(key("1111")), "disk", victim, tokensFor(victim));
        });
    }
});

describe("model fingerprint", () => {
    it("is stable for the same file and settings, and changes with the file's content or the KV layout", async () => {
        const model = path.join(temp.dir, "model.gguf");
        const content = randomBytes(3 * 1024 * 1024);
        await writeFile(model, content);
        const time = new Date("2024-01-01T00:00:00Z");
        await utimes(model, time, time);

        const base = await modelFingerprint({modelPath: model, flashAttention: false});
        assert.match(base, /^[0-9a-f]{32}$/);
        assert.equal(await modelFingerprint({modelPath: model, flashAttention: false, kvType: "f16"}), base);
        assert.notEqual(await modelFingerprint({modelPath: model, flashAttention: true}), base, "v_trans changes the layout");
        assert.notEqual(await modelFingerprint({modelPath: model, flashAttention: false, extra: {ropeFreqBase: 5e5}}), base);

        // Same size and mtime, one byte changed in the last MiB: the tail hash catches it.
        content[content.byteLength - 10]! ^= 1;
        await writeFile(model, content);
        await utimes(model, time, time);
        assert.notEqual(await modelFingerprint({modelPath: model, flashAttention: false}), base);

        // A copy elsewhere is a different path, hence a different fingerprint (cache files are per model file).
        const copy = path.join(temp.dir, "copy.gguf");
        await copyFile(model, copy);
        await utimes(copy, time, time);
        assert.notEqual(await modelFingerprint({modelPath: copy, flashAttention: false}), await modelFingerprint({modelPath: model, flashAttention: false}));
    });
});
