// The KV codec on stories260K's real chunk KV: every level round-trips (shape, cells, error shrinking with the level,
// next-token KL from the f16 cache), and a bad container ends in a typed error: truncated, flipped bits, unknown
// version, another model's cache, absurd header sizes, plus a fuzz of 100k mutations of real encoded files, each of
// which must be refused with a reason or decode to exactly what the intact file decodes to.
import assert from "node:assert/strict";
import {spawnSync} from "node:child_process";
import {readdir, readFile, stat, writeFile} from "node:fs/promises";
import path from "node:path";
import {fileURLToPath} from "node:url";
import {after, before, describe, it} from "node:test";
import v8 from "node:v8";
import vm from "node:vm";
import {crc32} from "node:zlib";
import {getLlama, type Llama, LlamaLogLevel, type LlamaContext, type LlamaContextSequence, type LlamaModel, type Token} from "node-llama-cpp";
import {ChunkKvCache, modelFingerprint} from "../../main/engine/kv/chunk-cache.js";
import {kvBodySize} from "../../main/engine/kv/kv-blob.js";
import {ropeParamsFromGguf, type RopeParams} from "../../main/engine/kv/rope-params.js";
import {isTransposed, type KvBody} from "../../main/engine/kv/kv-blob.js";
import {f16ToF32} from "../helpers/f16.js";
import {parseSeqStateFile, serializeSeqStateFile} from "../helpers/seq-state-file.js";
import {decodeKvBody, encodeKvBody, fingerprintBytes, KvCodecError, kvCodecLevelCount} from "../../main/engine/kv/kv-codec.js";
import {kvCodecDecodeSync, loadNativeAddon} from "../../main/engine/native/native-addon.js";
import {klDivergence} from "../helpers/logits.js";
import {makeTempDir, stories260kPath, testThreads} from "../helpers/paths.js";

const reasons = new Set(["truncated", "bad-magic", "wrong-version", "bad-header", "bad-sizes", "wrong-model", "wrong-shape", "checksum", "corrupt"]);
const chunkText = "Once upon a time, there was a little girl named Lily. She loved to play outside in the park with her red ball. " +
    "One day she saw a big dog.";

function values(bytes: Uint8Array): Float32Array {
    return f16ToF32(new Uint16Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 2));
}

/** Relative RMS error of every K and V value of `b` against `a`. */
function relativeError(a: KvBody, b: KvBody): number {
    let err = 0, power = 0;
    a.layers.forEach((layer, il) => {
        const other = b.layers[il]!;
        const pairs: Array<[Uint8Array, Uint8Array]> = [[layer.k.rows, other.k.rows],
            [isTransposed(layer.v) ? layer.v.data : layer.v.rows, isTransposed(other.v) ? other.v.data : other.v.rows]];
        for (const [x, y] of pairs) {
            const xs = values(x), ys = values(y);
            for (let i = 0; i < xs.length; i++) {
                err += (xs[i]! - ys[i]!) ** 2;
                power += xs[i]! ** 2;
            }
        }
    });
    return Math.sqrt(err / power);
}

// Header offsets (native/src/kv_codec.h).
function ropeBytesOf(view: DataView, nLayer: number): number {
    const at = 56 + 32 * nLayer;
    return (view.getUint32(40, true) & 2) === 0 ? 0 : at + 28 <= view.byteLength ? 28 + 4 * view.getUint32(at + 24, true) : 28;
}

const headerBytesOf = (file: Uint8Array) => {
    const view = new DataView(file.buffer, file.byteOffset, file.byteLength);
    const nLayer = view.getUint32(36, true);
    return 56 + 32 * nLayer + ropeBytesOf(view, nLayer) + view.getUint32(44, true) + 4;
};

/** Recomputes every checksum a mutation may have broken, so the fuzz also reaches the stream decoder. */
function repairChecksums(file: Uint8Array): void {
    const view = new DataView(file.buffer, file.byteOffset, file.byteLength);
    if (file.byteLength < 56)
        return;
    const nLayer = view.getUint32(36, true), metaBytes = view.getUint32(44, true);
    if (nLayer > 4096 || 56 + 32 * nLayer + 28 > file.byteLength)
        return;
    const headerBytes = 56 + 32 * nLayer + ropeBytesOf(view, nLayer) + metaBytes + 4;
    if (headerBytes > file.byteLength)
        return;
    for (let il = 0; il < nLayer; il++) {
        const entry = 56 + 32 * il;
        const offset = Number(view.getBigUint64(entry + 8, true)), bytes = Number(view.getBigUint64(entry + 16, true));
        if (headerBytes + offset + bytes <= file.byteLength)
            view.setUint32(entry + 24, crc32(file.subarray(headerBytes + offset, headerBytes + offset + bytes)), true);
    }
    view.setUint32(headerBytes - 4, crc32(file.subarray(0, headerBytes - 4)), true);
}

function mulberry32(seed: number): () => number {
    let a = seed >>> 0;
    return () => {
        a = (a + 0x6d2b79f5) >>> 0;
        let t = a;
        t = Math.imul(t ^ (t >>> 15), t | 1);
        t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
        return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
    };
}

function mutate(file: Uint8Array, random: () => number): Uint8Array {
    const pick = (n: number) => Math.floor(random() * n);
    const kind = pick(6);
    if (kind === 0)
        return Uint8Array.prototype.slice.call(file, 0, pick(file.byteLength));
    if (kind === 1) {
        const at = pick(file.byteLength + 1);
        const extra = Uint8Array.from({length: 1 + pick(8)}, () => pick(256));
        return Uint8Array.from([...file.subarray(0, at), ...extra, ...file.subarray(at)]);
    }
    const out = Uint8Array.prototype.slice.call(file);
    const edits = 1 + pick(4);
    for (let e = 0; e < edits; e++) {
        // Bias half the edits to the header, where the sizes live.
        const at = random() < 0.5 ? pick(Math.min(out.byteLength, headerBytesOf(file))) : pick(out.byteLength);
        if (kind === 2)
            out[at] = out[at]! ^ (1 << pick(8));
        else if (kind === 3)
            out[at] = pick(256);
        else if (kind === 4)
            out[at] = [0, 0xff, 0x7f, 0x80][pick(4)]!;
        else
            new DataView(out.buffer).setUint32(Math.min(at, out.byteLength - 4) & ~3, [0, 0xffffffff, 0x7fffffff, 1 << 22, 65537][pick(5)]!, true);
    }
    return out;
}

const addonLoad = loadNativeAddon();

describe("KV codec on stories260K", {skip: addonLoad.available ? false : addonLoad.reason}, () => {
    let temp: Awaited<ReturnType<typeof makeTempDir>>;
    let llama: Llama;
    let model: LlamaModel;
    let rope: RopeParams;
    const states = new Map<boolean, {tokens: Int32Array, body: KvBody, fingerprint: string, context: LlamaContext, sequence: LlamaContextSequence}>();

    before(async () => {
        temp = await makeTempDir("weft-kv-codec-");
        llama = await getLlama({gpu: false, maxThreads: testThreads, logLevel: LlamaLogLevel.error});
        model = await llama.loadModel({modelPath: stories260kPath});
        rope = ropeParamsFromGguf(model.fileInfo);
        for (const flashAttention of [false, true]) {
            const context = await model.createContext({contextSize: 256, threads: testThreads, sequences: 1, flashAttention});
            const sequence = context.getSequence();
            await sequence.evaluateWithoutGeneratingNewTokens(model.tokenize(chunkText, true));
            const file = path.join(temp.dir, `chunk-${flashAttention}.bin`);
            await sequence.saveStateToFile(file);
            const state = parseSeqStateFile(await readFile(file));
            states.set(flashAttention, {...state, fingerprint: await modelFingerprint({modelPath: stories260kPath, flashAttention}), context, sequence});
        }
    });

    after(async () => {
        for (const {context} of states.values())
            await context.dispose();
        await model?.dispose();
        await temp?.cleanup();
    });

    async function nextLogits(flashAttention: boolean, tokens: Int32Array, body: KvBody): Promise<Float64Array> {
        const {sequence} = states.get(flashAttention)!;
        {
            const file = path.join(temp.dir, `load-${flashAttention}.bin`);
            await writeFile(file, serializeSeqStateFile(tokens, body));
            await sequence.loadStateFromFile(file, {acceptRisk: true});
            const next = model.tokenize(" The", false)[0]! as Token;
            const [result] = await sequence.controlledEvaluate([[next, {generateNext: {logits: true}}]]);
            const out = new Float64Array(model.fileInfo.metadata.tokenizer.ggml.tokens.length);
            for (const [token, logit] of result!.next.logits!)
                out[token] = logit;
            return out;
        }
    }

    for (const flashAttention of [false, true]) {
        it(`round-trips every level (V ${flashAttention ? "rows" : "transposed"}): error and size shrink in order, KL small at the fine levels`, async () => {
            const {tokens, body, fingerprint} = states.get(flashAttention)!;
            const reference = await nextLogits(flashAttention, tokens, body);
            const sizes: number[] = [], errors: number[] = [];
            for (let level = 0; level < kvCodecLevelCount; level++) {
                const extra = Buffer.from(`chunk-key-${level}`);
                const file = await encodeKvBody(body, {level, fingerprint, extra, threads: testThreads, rope});
                const decoded = await decodeKvBody(file, {fingerprint, threads: testThreads});
                assert.equal(decoded.level, level);
                assert.equal(Buffer.from(decoded.extra).toString(), `chunk-key-${level}`);
                assert.deepEqual(decoded.body.cells, body.cells);
                assert.equal(decoded.body.vTrans, body.vTrans);
                assert.equal(decoded.body.nStream, body.nStream);
                sizes.push(file.byteLength);
                errors.push(relativeError(body, decoded.body));
                const kl = klDivergence(reference, await nextLogits(flashAttention, tokens, decoded.body));
                if (level === 0) {
                    assert.ok(errors[0]! < 0.02, `level 0 relative error ${errors[0]}`);
                    assert.ok(kl < 5e-3, `level 0 KL ${kl}`);
                }
            }
            for (let level = 1; level < kvCodecLevelCount; level++) {
                assert.ok(sizes[level]! < sizes[level - 1]!, `sizes ${sizes}`);
                assert.ok(errors[level]! > errors[level - 1]!, `errors ${errors}`);
            }
        });
    }

    it("stores the disk tier as the container: several times smaller, read back with its level, a damaged file dropped", async () => {
        const {tokens, body, fingerprint} = states.get(true)!;
        const key = {fingerprint, chunkHash: "c0dec", promptFormatVersion: 1};
        const dataDir = path.join(temp.dir, "cache-codec");
        const options = {dataDir, ramBudgetBytes: 0, diskBudgetBytes: 1 << 20, codec: {level: 2, threads: 1}};
        const cache = await ChunkKvCache.open(options);
        assert.deepEqual(await cache.put(key, {tokens, body, rope}), {ram: false, disk: true});
        const dir = path.join(dataDir, "kvcache", fingerprint);
        const [name] = (await readdir(dir)).filter((file) => file !== "layout.json");
        const fileBytes = (await stat(path.join(dir, name!))).size;
        assert.ok(fileBytes * 3 < kvBodySize(body), `the file holds ${fileBytes} bytes for a ${kvBodySize(body)}-byte f16 body`);
        const f16Bytes = body.layers.reduce((sum, {k, v}) => sum + k.rows.byteLength + (isTransposed(v) ? v.data : v.rows).byteLength, 0);
        assert.deepEqual([cache.stats().disk.bytes, cache.stats().disk.f16Bytes], [fileBytes, f16Bytes]);
        // Reopened, the shape comes from the file's header.
        assert.equal((await ChunkKvCache.open(options)).stats().disk.f16Bytes, f16Bytes);

        const hit = await (await ChunkKvCache.open(options)).get(key);
        assert.ok(hit.hit && hit.tier === "disk", JSON.stringify(hit));
        assert.equal(hit.codecLevel, 2);
        assert.equal(hit.readBytes, fileBytes);
        assert.deepEqual(Array.from(hit.tokens), Array.from(tokens));
        const kl = klDivergence(await nextLogits(true, tokens, body), await nextLogits(true, hit.tokens, hit.body));
        assert.ok(kl < 0.05, `KL ${kl} after the disk round trip`);

        const bytes = await readFile(path.join(dir, name!));
        bytes[bytes.byteLength - 3] = bytes[bytes.byteLength - 3]! ^ 0x55;
        await writeFile(path.join(dir, name!), bytes);
        const reopened = await ChunkKvCache.open(options);
        const miss = await reopened.get(key);
        assert.ok(!miss.hit && miss.reason === "checksum", JSON.stringify(miss));
        assert.equal(reopened.stats().droppedCorrupt, 1);
        // layout.json records the folder's KV layout (wkv-open.ts): it is not a cache entry.
        assert.deepEqual((await readdir(dir)).filter((file) => file !== "layout.json"), [], "the damaged file was dropped");
        // The key inside the container is checked too: another prompt format under the same file name is a miss.
        await reopened.put(key, {tokens, body, rope});
        const other = await (await ChunkKvCache.open(options)).get({...key, promptFormatVersion: 2});
        assert.ok(!other.hit && other.reason === "wrong-prompt-format", JSON.stringify(other));
    });

    it("refuses a bad container with a typed reason", async () => {
        const {body, fingerprint} = states.get(true)!;
        const file = await encodeKvBody(body, {level: 3, fingerprint, threads: testThreads, rope});
        const refuse = async (bytes: Uint8Array, reason: string, options: {fingerprint?: string, maxTokens?: number} = {}) => {
            await assert.rejects(decodeKvBody(bytes, {fingerprint, threads: 1, ...options}),
                (error: unknown) => error instanceof KvCodecError && error.reason === reason, `expected ${reason}`);
        };
        const headerBytes = headerBytesOf(file);
        for (const cut of [0, 4, 11, 40, headerBytes - 1, headerBytes + 10, file.byteLength - 1])
            await refuse(file.subarray(0, cut), cut < 8 ? "truncated" : "truncated");
        await refuse(Buffer.from("not a container at all, not at all"), "bad-magic");

        const flip = (at: number) => {
            const out = Uint8Array.prototype.slice.call(file);
            out[at] = out[at]! ^ 0x10;
            return out;
        };
        await refuse(flip(20), "bad-header");  // inside the fingerprint: caught by the header checksum
        await refuse(flip(headerBytes + 100), "checksum");
        await refuse(flip(file.byteLength - 1), "checksum");

        const edited = (edit: (view: DataView) => void, repair = true) => {
            const out = Uint8Array.prototype.slice.call(file);
            edit(new DataView(out.buffer));
            if (repair)
                repairChecksums(out);
            return out;
        };
        await refuse(edited((view) => view.setUint32(8, 1, true)), "wrong-version");
        await refuse(file, "wrong-model", {fingerprint: "0123456789abcdef0123456789abcdef"});
        // Absurd sizes, with the checksums made to match so that only the size checks stand in the way.
        const rss = process.memoryUsage().rss;
        await refuse(edited((view) => view.setUint32(32, 4_000_000, true)), "wrong-shape");
        await refuse(edited((view) => view.setUint32(32, 4_000_000, true)), "bad-sizes", {maxTokens: 4_000_000});
        await refuse(edited((view) => view.setUint32(36, 0xffffffff, true)), "bad-sizes");
        await refuse(edited((view) => view.setUint32(56, 65536, true)), "bad-sizes");
        await refuse(edited((view) => view.setBigUint64(56 + 16, 1n << 40n, true)), "bad-sizes");
        await refuse(edited((view) => view.setUint32(44, 0x7fffffff, true)), "bad-sizes");
        assert.ok(process.memoryUsage().rss - rss < 64 * 1024 * 1024, "absurd headers allocated memory");
        // The shape the model has is enforced when the caller gives it.
        await assert.rejects(decodeKvBody(file, {fingerprint, threads: 1, layers: [{nEmbdK: 32, nEmbdV: 64}]}),
            (error: unknown) => error instanceof KvCodecError && error.reason === "wrong-shape");
    });

    it("decodes into memory earlier bodies gave back: concurrent decodes of different files each match their first decode", async () => {
        // The decoder keeps the memory of collected bodies for the next decodes (kv_codec_output.cpp). A buffer handed
        // out twice, or a decoder that leaves bytes unwritten, shows here as one body holding another's values.
        v8.setFlagsFromString("--expose-gc");
        const collect = vm.runInNewContext("gc") as () => void;
        const files: Array<{file: Uint8Array, expect: Buffer}> = [];
        for (const flashAttention of [false, true]) {
            const {body, fingerprint} = states.get(flashAttention)!;
            for (const level of [0, 4]) {
                const file = await encodeKvBody(body, {level, fingerprint, threads: 1, rope});
                const first = await decodeKvBody(file, {fingerprint, threads: 1});
                files.push({file, expect: Buffer.concat(first.body.layers.flatMap((layer) => [
                    Buffer.from(layer.k.rows), Buffer.from(isTransposed(layer.v) ? layer.v.data : layer.v.rows)]))});
            }
        }
        const fingerprintOf = (index: number) => states.get(index < 2 ? false : true)!.fingerprint;
        for (let round = 0; round < 20; round++) {
            collect();
            await new Promise((resolve) => setImmediate(resolve)); // finalizers run after the collection
            const order = Array.from({length: 12}, (_, i) => (i * 7 + round) % files.length);
            const decoded = await Promise.all(order.map((index) => decodeKvBody(files[index]!.file, {fingerprint: fingerprintOf(index), threads: 1})));
            decoded.forEach((result, i) => {
                const got = Buffer.concat(result.body.layers.flatMap((layer) => [
                    Buffer.from(layer.k.rows), Buffer.from(isTransposed(layer.v) ? layer.v.data : layer.v.rows)]));
                assert.ok(got.equals(files[order[i]!]!.expect), `round ${round}: decode ${i} (file ${order[i]}) differs from its first decode`);
            });
        }
    });

    it("decodes alike on the scalar path (CPUs without AVX2)", {skip: process.env.WEFT_NO_AVX2 === "1"}, () => {
        // The round trips and refusals again in a child process whose addon may not use AVX2: its rANS loop reads the
        // same 16 streams one state at a time, and must end where the vector loop does.
        const env: NodeJS.ProcessEnv = {...process.env, WEFT_NO_AVX2: "1"};
        delete env.NODE_TEST_CONTEXT;
        const child = spawnSync(process.execPath, ["--import", "tsx", "--test", "--test-name-pattern=round-trips every level|refuses a bad container",
            fileURLToPath(import.meta.url)], {env, encoding: "utf8", timeout: 300_000});
        assert.equal(child.status, 0, `${child.stdout}\n${child.stderr}`);
        assert.match(child.stdout, /# pass [1-9]/, child.stdout);
        assert.match(child.stdout, /# fail 0/, child.stdout);
    });

    it("survives 100k mutations of real encoded files: each ends in a typed error or the intact decode", async () => {
        const files: Array<{file: Uint8Array, fingerprint: Uint8Array, decoded: Buffer}> = [];
        for (const flashAttention of [false, true]) {
            const {body, fingerprint} = states.get(flashAttention)!;
            for (const level of [0, 3, 5]) {
                // Keys un-rotated at two levels (the RoPE block in the header), as stored at the third.
                const file = await encodeKvBody(body, {level, fingerprint, threads: 1, rope: level === 5 ? null : rope});
                const intact = kvCodecDecodeSync(file, {fingerprint: fingerprintBytes(fingerprint), maxTokens: 4096});
                assert.ok(intact.ok);
                files.push({file, fingerprint: fingerprintBytes(fingerprint), decoded: Buffer.concat(intact.layers.flatMap((l) => [l.k, l.v]))});
            }
        }
        const random = mulberry32(13);
        const seen = new Map<string, number>();
        let repairedDecodes = 0;
        for (let i = 0; i < 100_000; i++) {
            const {file, fingerprint, decoded} = files[i % files.length]!;
            const mutant = mutate(file, random);
            // One mutation in five gets its checksums recomputed: those reach the section parser and the rANS decoder,
            // where a decode can succeed with other values, so only a typed error or the right shape is asked of them.
            const repaired = i % 5 === 4;
            if (repaired)
                repairChecksums(mutant);
            const result = kvCodecDecodeSync(mutant, {fingerprint, maxTokens: 4096});
            if (!result.ok) {
                assert.ok(reasons.has(result.reason), `mutation ${i}: untyped reason ${result.reason}`);
                seen.set(result.reason, (seen.get(result.reason) ?? 0) + 1);
                continue;
            }
            const out = Buffer.concat(result.layers.flatMap((l) => [l.k, l.v]));
            if (repaired) {
                assert.equal(out.byteLength, decoded.byteLength, `mutation ${i}: decoded another shape`);
                repairedDecodes++;
            } else {
                assert.ok(out.equals(decoded), `mutation ${i} decoded without error to other values`);
            }
        }
        // The fuzz reached every kind of check, the stream decoder included.
        for (const reason of ["truncated", "bad-header", "checksum", "corrupt", "bad-sizes"])
            assert.ok((seen.get(reason) ?? 0) > 0, `no mutation ended in ${reason}: ${JSON.stringify([...seen])}`);
        assert.ok(repairedDecodes >= 0);
    });
});
