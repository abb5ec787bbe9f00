// A chunk's KV stored in the chunk cache and read back from disk is the same KV as the copy kept in RAM: loaded into a
// sequence, both give exactly the same logits for the next token (stories260K, CPU, both V layouts).
import assert from "node:assert/strict";
import {readFile, writeFile} from "node:fs/promises";
import path from "node:path";
import {after, before, describe, it} from "node:test";
import {getLlama, type Llama, LlamaLogLevel, type LlamaModel, type Token} from "node-llama-cpp";
import {ChunkKvCache, type ChunkKey, modelFingerprint} from "../../main/engine/kv/chunk-cache.js";
import {type KvBody, parseSeqStateFile, serializeKvBody, serializeSeqStateFile} from "../../main/engine/kv/kv-blob.js";
import {makeTempDir, stories260kPath, testThreads} from "../helpers/paths.js";

describe("chunk cache on stories260K: disk round trip keeps the logits", () => {
    let temp: Awaited<ReturnType<typeof makeTempDir>>;
    let llama: Llama;
    let model: LlamaModel;

    before(async () => {
        temp = await makeTempDir("weft-kvcache-model-");
        llama = await getLlama({gpu: false, maxThreads: testThreads, logLevel: LlamaLogLevel.error});
        model = await llama.loadModel({modelPath: stories260kPath});
    });

    after(async () => {
        await model?.dispose();
        await temp.cleanup();
    });

    for (const flashAttention of [false, true]) {
        it(`gives identical logits from the RAM and the disk copy (flash attention ${flashAttention ? "on" : "off"})`, async (t) => {
            const context = await model.createContext({contextSize: 256, threads: testThreads, sequences: 1, flashAttention});
            try {
                const sequence = context.getSequence();
                const chunk = model.tokenize("Once upon a time, there was a little girl named Lily.", true);
                const next = model.tokenize(" She", false)[0]!;

                await sequence.evaluateWithoutGeneratingNewTokens(chunk);
                const stateFile = path.join(temp.dir, `chunk-${flashAttention}.bin`);
                await sequence.saveStateToFile(stateFile);
                const state = parseSeqStateFile(await readFile(stateFile));

                const key: ChunkKey = {
                    fingerprint: await modelFingerprint({modelPath: stories260kPath, flashAttention}),
                    chunkHash: "4f1c2a9e0b7d",
                    promptFormatVersion: 1
                };
                const dataDir = path.join(temp.dir, `data-${flashAttention}`);
                const cache = await ChunkKvCache.open({dataDir, ramBudgetBytes: 1 << 20, diskBudgetBytes: 1 << 20});
                assert.deepEqual(await cache.put(key, {tokens: state.tokens, body: state.body}), {ram: true, disk: true});

                const fromRam = await cache.get(key);
                assert.ok(fromRam.hit && fromRam.tier === "ram");
                // A second instance has nothing in RAM: its hit comes from the .wkv file.
                const reopened = await ChunkKvCache.open({dataDir, ramBudgetBytes: 1 << 20, diskBudgetBytes: 1 << 20});
                const fromDisk = await reopened.get(key);
                assert.ok(fromDisk.hit && fromDisk.tier === "disk", JSON.stringify(fromDisk));
                assert.deepEqual(Array.from(fromDisk.tokens), chunk);
                assert.deepEqual(Buffer.from(serializeKvBody(fromDisk.body)), Buffer.from(serializeKvBody(state.body)));

                const logitsFor = async (tokens: Int32Array, body: KvBody, name: string): Promise<Float64Array> => {
                    const file = path.join(temp.dir, `${name}-${flashAttention}.bin`);
                    await writeFile(file, serializeSeqStateFile(tokens, body));
                    await sequence.loadStateFromFile(file, {acceptRisk: true});
                    assert.equal(sequence.nextTokenIndex, chunk.length);
                    const [result] = await sequence.controlledEvaluate([[next as Token, {generateNext: {logits: true}}]]);
                    const logits = result?.next.logits;
                    assert.ok(logits != null && logits.size > 0);
                    const out = new Float64Array(logits.size);
                    for (const [token, logit] of logits)
                        out[token] = logit;
                    return out;
                };
                const ramLogits = await logitsFor(fromRam.tokens, fromRam.body, "ram");
                const diskLogits = await logitsFor(fromDisk.tokens, fromDisk.body, "disk");
                assert.ok(ramLogits.every(Number.isFinite));
                assert.deepEqual(diskLogits, ramLogits, "logits must match exactly");

                // And both match the sequence that was never saved: the chunk evaluated, then the token in its own
                // batch (as after a load; one batch with both would change the kernels' summation order).
                await sequence.clearHistory();
                await sequence.evaluateWithoutGeneratingNewTokens(chunk);
                const direct = await sequence.controlledEvaluate([[next, {generateNext: {logits: true}}]]);
                const directLogits = new Float64Array(ramLogits.length);
                for (const [token, logit] of direct.at(-1)!.next.logits!)
                    directLogits[token] = logit;
                assert.deepEqual(directLogits, ramLogits);

                const stats = reopened.stats();
                t.diagnostic(`${state.body.cells.length} cells, .wkv ${stats.disk.bytes} bytes; disk hits ${stats.disk.hits}, RAM misses ${stats.ram.misses}; max |logit| ${Math.max(...ramLogits.map(Math.abs)).toFixed(2)}`);
            } finally {
                await context.dispose();
            }
        });
    }
});
