import assert from "node:assert/strict";
import {open, writeFile} from "node:fs/promises";
import path from "node:path";
import {after, before, describe, it} from "node:test";
import {apiSocketPath, ChatRequest} from "../../main/contract/index.js";
import {Engine} from "../../main/engine/engine.js";
import {type RunningServer, startServer} from "../../main/serve/server.js";
import {collectEvents, lastEvent} from "../helpers/collect.js";
import {makeTempDir, stories260kPath, testThreads} from "../helpers/paths.js";
import {TestSocket} from "../helpers/socket.js";

function ggufString(text: string): Buffer {
    const bytes = Buffer.from(text);
    const length = Buffer.alloc(8);
    length.writeBigUInt64LE(BigInt(bytes.length));
    return Buffer.concat([length, bytes]);
}

/**
 * A GGUF whose one tensor claims 4096 × 50,000,000 f32 (~763 GiB): the header is real, the data a sparse hole,
 * so the file reports that size without using the disk.
 */
async function writeHugeModel(filePath: string): Promise<void> {
    const u32 = (value: number) => {
        const b = Buffer.alloc(4);
        b.writeUInt32LE(value);
        return b;
    };
    const u64 = (value: number) => {
        const b = Buffer.alloc(8);
        b.writeBigUInt64LE(BigInt(value));
        return b;
    };
    const dims = [4096, 50_000_000];
    const header = Buffer.concat([
        Buffer.from("GGUF"), u32(3), u64(1), u64(2),
        ggufString("general.architecture"), u32(8), ggufString("llama"),
        ggufString("llama.context_length"), u32(4), u32(4096),
        ggufString("token_embd.weight"), u32(2), u64(dims[0]!), u64(dims[1]!), u32(0), u64(0)
    ]);
    const dataStart = Math.ceil(header.length / 32) * 32;
    const handle = await open(filePath, "w");
    await handle.write(header, 0, header.length, 0);
    await handle.truncate(dataStart + dims[0]! * dims[1]! * 4);
    await handle.close();
}

describe("bad input leaves the engine and serve working (real model)", () => {
    let temp: Awaited<ReturnType<typeof makeTempDir>>;
    let engine: Engine;
    let server: RunningServer;
    let socketUrl: string;

    before(async () => {
        temp = await makeTempDir();
        engine = await Engine.open({dataDir: path.join(temp.dir, "data"), threads: testThreads, gpu: false});
        await writeFile(path.join(temp.dir, "index.html"), "");
        server = await startServer({engine, rendererDir: temp.dir, port: 0});
        socketUrl = `ws://127.0.0.1:${server.port}${apiSocketPath}?token=${server.token}`;
    });

    after(async () => {
        await server.close();
        await engine.close();
        await temp.cleanup();
    });

    it("refuses a model too large for this machine's memory with a clear message, then answers with a good one", async () => {
        const huge = path.join(temp.dir, "huge.gguf");
        await writeHugeModel(huge);
        const info = await engine.addModel({path: huge});
        const refused = lastEvent(await collectEvents(engine.chat(ChatRequest.parse({question: "hi", modelId: info.id}), new AbortController().signal)), "error");
        assert.equal(refused.error.code, "model_too_large");
        assert.match(refused.error.message, /needs \d+(\.\d)? GiB .* this machine has \d+(\.\d)? GiB/);

        const good = await engine.addModel({path: stories260kPath});
        const done = lastEvent(await collectEvents(engine.chat(ChatRequest.parse({question: "Once upon a time", modelId: good.id, maxTokens: 8}),
            new AbortController().signal)), "done");
        assert.equal(done.stats.completionTokens, 8);
    });

    it("a client that drops its connection mid-stream does not stop the next client from being served", async () => {
        const first = await TestSocket.connect(socketUrl);
        first.send({type: "stream", id: 1, method: "chat", input: {question: "Once upon a time", modelId: "stories260k", maxTokens: 2000}});
        await first.waitFor((message) => message.type === "event" && (message.event as {type: string}).type === "token");
        first.ws.terminate();

        const second = await TestSocket.connect(socketUrl);
        try {
            second.send({type: "stream", id: 1, method: "chat", input: {question: "Once upon a time", modelId: "stories260k", maxTokens: 12}});
            await second.waitForStreamEnd(1, 60_000);
            const events = second.eventsOf(1);
            const done = events.at(-1) as {type: string, stats: {completionTokens: number}, cancelled: boolean};
            assert.equal(done.type, "done");
            assert.equal(done.cancelled, false);
            assert.equal(done.stats.completionTokens, 12);
        } finally {
            second.close();
        }
    });
});
