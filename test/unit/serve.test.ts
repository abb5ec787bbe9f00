import assert from "node:assert/strict";
import {mkdir, writeFile} from "node:fs/promises";
import {request} from "node:http";
import path from "node:path";
import {after, before, describe, it} from "node:test";
import {apiSocketPath, CacheWarmStatus} from "../../main/contract/index.js";
import {Engine} from "../../main/engine/engine.js";
import {type RunningServer, startServer} from "../../main/serve/server.js";
import {makeTempDir} from "../helpers/paths.js";
import {TestSocket} from "../helpers/socket.js";

function get(port: number, urlPath: string, headers: Record<string, string> = {}): Promise<{status: number, headers: Record<string, unknown>, body: string}> {
    return new Promise((resolve, reject) => {
        const req = request({host: "127.0.0.1", port, path: urlPath, headers}, (res) => {
            let body = "";
            res.on("data", (chunk) => (body += chunk));
            res.on("end", () => resolve({status: res.statusCode ?? 0, headers: res.headers, body}));
        });
        req.on("error", reject);
        req.end();
    });
}

describe("weft serve transport (no model)", () => {
    let temp: Awaited<ReturnType<typeof makeTempDir>>;
    let engine: Engine;
    let server: RunningServer;
    let socketUrl: string;

    before(async () => {
        temp = await makeTempDir();
        const rendererDir = path.join(temp.dir, "renderer");
        await mkdir(rendererDir);
        await writeFile(path.join(rendererDir, "index.html"), "<!doctype html><title>Weft</title>");
        await writeFile(path.join(temp.dir, "secret.txt"), "outside the renderer");
        engine = await Engine.open({dataDir: path.join(temp.dir, "data"), threads: 1, gpu: false});
        server = await startServer({engine, rendererDir, port: 0});
        socketUrl = `ws://127.0.0.1:${server.port}${apiSocketPath}?token=${server.token}`;
    });

    after(async () => {
        await server.close();
        await engine.close();
        await temp.cleanup();
    });

    it("prints a loopback URL that carries the token in the fragment", () => {
        assert.match(server.url, /^http:\/\/127\.0\.0\.1:\d+\/#token=[0-9a-f]{48}$/);
    });

    it("serves the renderer with a CSP and refuses paths outside it", async () => {
        const index = await get(server.port, "/");
        assert.equal(index.status, 200);
        assert.match(index.body, /<title>Weft<\/title>/);
        assert.match(String(index.headers["content-security-policy"]), /default-src 'self'/);
        for (const escape of ["/../secret.txt", "/%2e%2e/secret.txt", "/..%2fsecret.txt", "/%2e%2e%5csecret.txt"]) {
            const response = await get(server.port, escape);
            assert.notEqual(response.status, 200, escape);
            assert.equal(response.body.includes("outside"), false, escape);
        }
        assert.equal((await get(server.port, "/nope.js")).status, 404);
    });

    it("refuses a foreign Host header (DNS rebinding)", async () => {
        assert.equal((await get(server.port, "/", {Host: "evil.example:80"})).status, 421);
    });

    it("refuses the socket without the right token or from another origin", async () => {
        await assert.rejects(TestSocket.connect(`ws://127.0.0.1:${server.port}${apiSocketPath}`), /HTTP 401/);
        await assert.rejects(TestSocket.connect(`ws://127.0.0.1:${server.port}${apiSocketPath}?token=${"0".repeat(48)}`), /HTTP 401/);
        await assert.rejects(TestSocket.connect(socketUrl, {Origin: "http://evil.example"}), /HTTP 403/);
        assert.equal((await get(server.port, `${apiSocketPath}?token=wrong`)).status, 401);
        assert.equal((await get(server.port, `${apiSocketPath}?token=${server.token}`)).status, 426);
        const ok = await TestSocket.connect(socketUrl, {Origin: `http://127.0.0.1:${server.port}`});
        ok.close();
    });

    it("answers calls, validates inputs and reports errors as {code, message}", async () => {
        const socket = await TestSocket.connect(socketUrl);
        try {
            assert.deepEqual(await socket.call(1, "listModels", {}), {type: "result", id: 1, output: []});

            const status = await socket.call(2, "getStatus", {});
            assert.equal(status.type, "result");
            assert.equal((status as {output: {threads: number}}).output.threads, 1);

            const badInput = await socket.call(3, "addModel", {path: 42});
            assert.equal(badInput.type, "failure");
            assert.equal((badInput as {error: {code: string}}).error.code, "bad_request");

            const missing = await socket.call(4, "addModel", {path: path.join(temp.dir, "none.gguf")});
            assert.deepEqual((missing as {error: {code: string}}).error.code, "model_missing");

            const unknown = await socket.call(5, "formatDisk", {});
            assert.match((unknown as {error: {message: string}}).error.message, /unknown method/);

            socket.send({type: "stream", id: 6, method: "chat", input: {question: "hi"}});
            await socket.waitForStreamEnd(6);
            const events = socket.eventsOf(6);
            assert.deepEqual(events.map((event) => event.type), ["error"]);
            assert.equal((events[0] as unknown as {error: {code: string}}).error.code, "no_model");

            socket.send({type: "stream", id: 7, method: "chat", input: {question: "   "}});
            const empty = await socket.waitFor((message) => message.id === 7);
            assert.equal(empty.type, "failure");

            socket.ws.send("{not json");
            const malformed = await socket.waitFor((message) => message.id === -1);
            assert.equal((malformed as {error: {code: string}}).error.code, "bad_request");

            // Still serving after all of that.
            assert.equal((await socket.call(8, "listModels", {})).type, "result");
        } finally {
            socket.close();
        }
    });

    it("serves background cache warming: pause, resume and the watchCacheWarm stream", async () => {
        const socket = await TestSocket.connect(socketUrl);
        try {
            socket.send({type: "stream", id: 1, method: "watchCacheWarm", input: {}});
            const first = await socket.waitFor((message) => message.id === 1 && message.type === "event");
            const status = CacheWarmStatus.parse((first as {event: {status: unknown}}).event.status);
            assert.equal(status.state, "idle");

            const paused = await socket.call(2, "pauseCacheWarm", {});
            assert.equal(CacheWarmStatus.parse((paused as {output: unknown}).output).state, "paused");
            // The stream reports the change.
            await socket.waitFor((message) => message.id === 1 && message.type === "event" &&
                (message.event as {status?: {state: string}}).status?.state === "paused");
            const statusCall = await socket.call(3, "getStatus", {});
            assert.equal((statusCall as {output: {cacheWarm: {state: string}}}).output.cacheWarm.state, "paused");

            const resumed = await socket.call(4, "resumeCacheWarm", {});
            assert.equal(CacheWarmStatus.parse((resumed as {output: unknown}).output).state, "idle");

            socket.send({type: "cancel", id: 1});
            await socket.waitForStreamEnd(1);
            assert.equal(socket.eventsOf(1).at(-1)?.type, "done");
        } finally {
            socket.close();
        }
    });
});
