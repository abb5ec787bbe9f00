import assert from "node:assert/strict";
import {createHash, randomBytes} from "node:crypto";
import {mkdir, writeFile} from "node:fs/promises";
import {request} from "node:http";
import {connect, type Socket} from "node:net";
import path from "node:path";
import {after, before, describe, it} from "node:test";
import WebSocket from "ws";
import {apiSocketPath} from "../../main/contract/index.js";
import {Engine} from "../../main/engine/engine.js";
import {type RunningServer, startServer} from "../../main/serve/server.js";
import {makeTempDir} from "../helpers/paths.js";
import {TestSocket} from "../helpers/socket.js";

/** Sends raw bytes and collects whatever comes back until the server closes or `waitMs` of silence. */
function rawExchange(port: number, bytes: Buffer | string, waitMs = 300): Promise<string> {
    return new Promise((resolve) => {
        const socket = connect(port, "127.0.0.1");
        let received = "";
        let timer: NodeJS.Timeout | undefined;
        const finish = () => {
            clearTimeout(timer);
            socket.destroy();
            resolve(received);
        };
        const arm = () => {
            clearTimeout(timer);
            timer = setTimeout(finish, waitMs);
        };
        socket.on("data", (data) => {
            received += data.toString("latin1");
            arm();
        });
        socket.on("error", finish);
        socket.on("close", finish);
        socket.on("connect", () => {
            socket.write(bytes);
            arm();
        });
    });
}

function getStatus(port: number, urlPath = "/"): Promise<number> {
    return new Promise((resolve, reject) => {
        const req = request({host: "127.0.0.1", port, path: urlPath}, (res) => {
            res.resume();
            res.on("end", () => resolve(res.statusCode ?? 0));
        });
        req.on("error", reject);
        req.end();
    });
}

/** Resolves with the close code the server sends after `send` runs on an open socket. */
function closeCodeAfter(url: string, send: (ws: WebSocket) => void): Promise<number> {
    return new Promise((resolve, reject) => {
        const ws = new WebSocket(url);
        ws.on("error", () => {});
        ws.once("open", () => send(ws));
        ws.once("close", (code) => resolve(code));
        ws.once("unexpected-response", () => reject(new Error("upgrade refused")));
    });
}

/** A masked client frame, written by hand so a test can send what a well-behaved client library never would. */
function clientFrame(opcode: number, payload: Buffer, fin = true, rsv = 0): Buffer {
    const mask = randomBytes(4);
    const masked = Buffer.from(payload.map((byte, index) => byte ^ mask[index % 4]!));
    const head = [((fin ? 0x80 : 0) | (rsv << 4) | opcode) & 0xff];
    if (payload.length < 126)
        head.push(0x80 | payload.length);
    else if (payload.length < 65536)
        head.push(0x80 | 126, payload.length >> 8, payload.length & 0xff);
    else {
        head.push(0x80 | 127, 0, 0, 0, 0);
        head.push((payload.length >>> 24) & 0xff, (payload.length >> 16) & 0xff, (payload.length >> 8) & 0xff, payload.length & 0xff);
    }
    return Buffer.concat([Buffer.from(head), mask, masked]);
}

/** Opens the socket by hand (raw TCP) so the fuzzer can follow the handshake with arbitrary bytes. */
function rawUpgrade(port: number, token: string): Promise<Socket> {
    return new Promise((resolve, reject) => {
        const key = randomBytes(16).toString("base64");
        const socket = connect(port, "127.0.0.1");
        socket.on("error", reject);
        socket.once("connect", () => socket.write(
            `GET ${apiSocketPath}?token=${token} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nUpgrade: websocket\r\n` +
            `Connection: Upgrade\r\nSec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n\r\n`));
        socket.once("data", (data) => {
            const expected = createHash("sha1").update(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest("base64");
            if (!data.toString("latin1").includes(expected))
                reject(new Error(`handshake failed: ${data.toString("latin1").slice(0, 80)}`));
            else
                resolve(socket);
        });
    });
}

/** A small seeded generator, so a failing fuzz run can be replayed from its seed. */
function prng(seed: number) {
    let state = seed >>> 0;
    const next = () => {
        state = (state + 0x6d2b79f5) >>> 0;
        let t = state;
        t = Math.imul(t ^ (t >>> 15), t | 1);
        t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
        return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
    };
    const int = (below: number) => Math.floor(next() * below);
    const pick = <T>(items: readonly T[]): T => items[int(items.length)]!;
    const bytes = (length: number) => Buffer.from(Array.from({length}, () => int(256)));
    return {next, int, pick, bytes};
}

describe("weft serve under hostile input", () => {
    let temp: Awaited<ReturnType<typeof makeTempDir>>;
    let engine: Engine;
    let server: RunningServer;
    let socketUrl: string;
    const logged: string[] = [];
    // In `weft serve` any of these would end the process; here they are recorded so each test can fail on them.
    const uncaught: string[] = [];
    const recordUncaught = (error: Error) => uncaught.push(error.message);
    const assertNoneUncaught = () => assert.deepEqual(uncaught.splice(0), [], "errors nothing handled (each would stop weft serve)");

    before(async () => {
        process.on("uncaughtException", recordUncaught);
        temp = await makeTempDir();
        const rendererDir = path.join(temp.dir, "renderer");
        await mkdir(rendererDir);
        await writeFile(path.join(rendererDir, "index.html"), "<!doctype html><title>Weft</title>");
        engine = await Engine.open({dataDir: path.join(temp.dir, "data"), threads: 1, gpu: false});
        server = await startServer({engine, rendererDir, port: 0, log: (line) => logged.push(line)});
        socketUrl = `ws://127.0.0.1:${server.port}${apiSocketPath}?token=${server.token}`;
    });

    after(async () => {
        process.off("uncaughtException", recordUncaught);
        await server.close();
        await engine.close();
        await temp.cleanup();
    });

    it("answers a request line whose path is not a URL (GET //[) with 400 and keeps serving", async () => {
        for (const target of ["//[", "//[::1", "//x:99999/", "http://[/", "//%zz"]) {
            const reply = await rawExchange(server.port, `GET ${target} HTTP/1.1\r\nHost: 127.0.0.1:${server.port}\r\n\r\n`);
            assert.match(reply, /^HTTP\/1\.1 (400|404)/, target);
        }
        const upgrade = await rawExchange(server.port, `GET //[ HTTP/1.1\r\nHost: 127.0.0.1:${server.port}\r\n` +
            "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAA==\r\nSec-WebSocket-Version: 13\r\n\r\n");
        assert.match(upgrade, /^HTTP\/1\.1 400/);
        assert.equal(await getStatus(server.port), 200);
        assertNoneUncaught();
    });

    it("closes a socket that sends more than the payload limit with 1009, and invalid UTF-8 with 1007", async () => {
        const tooBig = await closeCodeAfter(socketUrl, (ws) => ws.send("x".repeat(1024 * 1024 + 1)));
        assert.equal(tooBig, 1009);
        const badText = await closeCodeAfter(socketUrl, (ws) => ws.send(Buffer.from([0xc3, 0x28, 0xff]), {binary: false}));
        assert.equal(badText, 1007);

        const socket = await TestSocket.connect(socketUrl);
        try {
            assert.equal((await socket.call(1, "listModels", {})).type, "result");
        } finally {
            socket.close();
        }
        assertNoneUncaught();
    });

    it("survives a bounded fuzz of the HTTP and WebSocket surface and still answers", async () => {
        const seed = Number(process.env.WEFT_FUZZ_SEED ?? 20261203);
        const rand = prng(seed);
        const methods = ["GET", "HEAD", "POST", "PUT", "OPTIONS", "BREW", "G\x00T", ""];
        const pathPieces = ["/", "//", "[", "]", "%", "%zz", "%00", "..", "/..", "\\", "?", "#", "token=", apiSocketPath, "@", ":", "ü", "\x7f"];
        const httpCases = 150;
        for (let index = 0; index < httpCases; index++) {
            const target = Array.from({length: 1 + rand.int(6)}, () => rand.pick(pathPieces)).join("");
            const headers = [`Host: ${rand.pick([`127.0.0.1:${server.port}`, "evil.example", "", "[", `localhost:${server.port}`])}`];
            if (rand.next() < 0.3)
                headers.push("Upgrade: websocket", "Connection: Upgrade", `Sec-WebSocket-Key: ${randomBytes(16).toString("base64")}`, "Sec-WebSocket-Version: 13");
            if (rand.next() < 0.2)
                headers.push(`Content-Length: ${rand.pick(["-1", "99999999999", "abc", "5"])}`);
            const line = rand.next() < 0.15
                ? rand.bytes(1 + rand.int(200))
                : Buffer.from(`${rand.pick(methods)} ${target} HTTP/1.${rand.int(3)}\r\n${headers.join("\r\n")}\r\n\r\n`, "latin1");
            await rawExchange(server.port, line, 30);
        }

        const safeRpcs = ["getStatus", "listModels", "listFolders", "pauseCacheWarm", "resumeCacheWarm", "removeModel", "selectModel"];
        const junkValues: unknown[] = [null, 0, -1, 1e308, "", "x".repeat(1000), [], {}, {path: 42}, {id: {}}, true, {__proto__: {a: 1}}];
        const wsCases = 120;
        for (let index = 0; index < wsCases; index++) {
            const kind = rand.int(4);
            if (kind === 0) {
                // Raw frames straight after the handshake: bad opcodes, reserved bits, fragments, unmasked lies.
                const socket = await rawUpgrade(server.port, server.token);
                socket.on("error", () => {});
                const frames = Array.from({length: 1 + rand.int(4)}, () => rand.next() < 0.5
                    ? clientFrame(rand.int(16), rand.bytes(rand.int(200)), rand.next() < 0.7, rand.int(8))
                    : rand.bytes(1 + rand.int(64)));
                socket.write(Buffer.concat(frames));
                await new Promise((resolve) => setTimeout(resolve, 10));
                socket.destroy();
            } else {
                const socket = await TestSocket.connect(socketUrl);
                socket.ws.on("error", () => {});
                const messages = Array.from({length: 1 + rand.int(5)}, () => {
                    const choice = rand.int(5);
                    if (choice === 0)
                        return rand.bytes(rand.int(100)).toString("latin1");
                    if (choice === 1)
                        return JSON.stringify(rand.pick(junkValues));
                    if (choice === 2)
                        return JSON.stringify({type: "call", id: rand.int(5), method: rand.pick(safeRpcs), input: rand.pick(junkValues)});
                    if (choice === 3)
                        return JSON.stringify({type: rand.pick(["stream", "cancel"]), id: rand.int(3), method: "watchCacheWarm", input: rand.pick(junkValues)});
                    return JSON.stringify({type: "call", id: rand.pick([-1, 1.5, 2 ** 60, "x"]), method: "nope", input: {}});
                });
                for (const message of messages) {
                    if (socket.ws.readyState !== socket.ws.OPEN)
                        break;
                    socket.ws.send(message, {binary: rand.next() < 0.1});
                }
                await new Promise((resolve) => setTimeout(resolve, 5));
                if (rand.next() < 0.5)
                    socket.ws.terminate();
                else
                    socket.close();
            }
        }

        assert.equal(await getStatus(server.port), 200, `seed ${seed}`);
        const socket = await TestSocket.connect(socketUrl);
        try {
            assert.equal((await socket.call(1, "getStatus", {})).type, "result", `seed ${seed}`);
            assert.equal((await socket.call(2, "resumeCacheWarm", {})).type, "result", `seed ${seed}`);
        } finally {
            socket.close();
        }
        assertNoneUncaught();
    });
});
