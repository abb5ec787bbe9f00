import assert from "node:assert/strict";
import {readFile, writeFile} from "node:fs/promises";
import path from "node:path";
import {after, before, describe, it} from "node:test";
import {ChatRequest, EngineError} from "../../main/contract/index.js";
import {Engine} from "../../main/engine/engine.js";
import {probeModelLoad} from "../../main/engine/model-load-probe.js";
import {collectEvents} from "../helpers/collect.js";
import {makeTempDir, stories260kPath, testThreads} from "../helpers/paths.js";

/** A copy of a real model with one u32 metadata value replaced in place (the rest of the file stays valid). */
function withU32(original: Buffer, key: string, value: number): Buffer {
    const copy = Buffer.from(original);
    const keyAt = copy.indexOf(Buffer.from(key));
    assert.ok(keyAt > 0, key);
    const typeAt = keyAt + key.length;
    assert.equal(copy.readUInt32LE(typeAt), 4, `${key} is a u32`);
    copy.writeUInt32LE(value, typeAt + 4);
    return copy;
}

describe("models are checked before anything loads them", () => {
    let temp: Awaited<ReturnType<typeof makeTempDir>>;
    let engine: Engine;
    let original: Buffer;
    let absurdLayers: string;

    before(async () => {
        temp = await makeTempDir();
        original = await readFile(stories260kPath);
        absurdLayers = path.join(temp.dir, "absurd-layers.gguf");
        await writeFile(absurdLayers, withU32(original, "llama.block_count", 100_000));
        engine = await Engine.open({dataDir: path.join(temp.dir, "data"), threads: testThreads, gpu: false});
    });

    after(async () => {
        await engine.close();
        await temp.cleanup();
    });

    const refused = async (file: string, pattern: RegExp) => {
        await assert.rejects(engine.addModel({path: file}), (error: unknown) => {
            assert.ok(error instanceof EngineError, String(error));
            assert.equal(error.code, "model_invalid");
            assert.match(error.message, pattern);
            return true;
        });
    };

    it("refuses absurd header values at models add (block_count = 100000, head counts, tensor and key counts)", async () => {
        await refused(absurdLayers, /block_count/);
        const heads = path.join(temp.dir, "heads.gguf");
        await writeFile(heads, withU32(original, "llama.attention.head_count_kv", 0));
        await refused(heads, /head_count_kv/);

        const tensorCount = Buffer.from(original);
        tensorCount.writeBigUInt64LE(1n << 40n, 8);
        await writeFile(path.join(temp.dir, "tensors.gguf"), tensorCount);
        await refused(path.join(temp.dir, "tensors.gguf"), /tensor count/);

        const keyCount = Buffer.from(original);
        keyCount.writeBigUInt64LE(1n << 50n, 16);
        await writeFile(path.join(temp.dir, "keys.gguf"), keyCount);
        await refused(path.join(temp.dir, "keys.gguf"), /metadata count/);
        assert.deepEqual(await engine.listModels(), []);
    });

    it("refuses a bare GGUF magic and files truncated anywhere, each with a clear message", async () => {
        await writeFile(path.join(temp.dir, "bare.gguf"), "GGUF");
        await refused(path.join(temp.dir, "bare.gguf"), /too short|truncated/);
        // In the header, the metadata, the tensor infos, and the tensor data.
        for (const length of [10, 30, 5000, 14_000, 200_000, original.length - 1]) {
            const file = path.join(temp.dir, `cut-${length}.gguf`);
            await writeFile(file, original.subarray(0, length));
            await refused(file, /truncated|damaged|too short/);
        }
        assert.deepEqual(await engine.listModels(), []);
    });

    it("loads a model for the first time in a child process: a llama.cpp abort there becomes an error here", async () => {
        await assert.rejects(probeModelLoad(absurdLayers, {gpu: false}), (error: unknown) => {
            assert.ok(error instanceof EngineError, String(error));
            assert.equal(error.code, "model_invalid");
            assert.match(error.message, /llama\.cpp stopped|crashed|signal|exit/);
            return true;
        });
        await probeModelLoad(stories260kPath, {gpu: false});
    });

    it("a registered model that has become absurd fails a question with model_invalid; the engine keeps answering", async () => {
        const dataDir = path.join(temp.dir, "old-registry");
        const victim = path.join(temp.dir, "was-good.gguf");
        await writeFile(victim, original);
        const old = await Engine.open({dataDir, threads: testThreads, gpu: false});
        try {
            await old.addModel({path: victim});
        } finally {
            await old.close();
        }
        await writeFile(victim, withU32(original, "llama.block_count", 100_000));

        const reopened = await Engine.open({dataDir, threads: testThreads, gpu: false});
        try {
            const events = await collectEvents(reopened.chat(ChatRequest.parse({question: "Who is Lily?", topK: 0, maxTokens: 4}),
                new AbortController().signal));
            const last = events.at(-1) as {type: string, error?: {code: string}};
            assert.equal(last.type, "error");
            assert.equal(last.error?.code, "model_invalid");
            assert.equal((await reopened.getStatus()).threads, testThreads);
        } finally {
            await reopened.close();
        }
    });
});
