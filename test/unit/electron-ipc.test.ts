// The Electron shell's IPC without Electron: the main-process handlers against a real engine (no model), and the
// real preload bundle run in a bare V8 context with a fake `electron` that routes to those handlers.
import assert from "node:assert/strict";
import {writeFile} from "node:fs/promises";
import path from "node:path";
import {after, before, describe, it} from "node:test";
import {setTimeout as delay} from "node:timers/promises";
import vm from "node:vm";
import {build} from "esbuild";
import {
    type CacheWarmEvent, CacheWarmStatus, type ChatEvent, type EngineApi, ipcChannels, type PreloadApi, preloadGlobalName, rpcNames, streamNames
} from "../../main/contract/index.js";
import {createIpcHandlers, type IpcEnvelope, type IpcHandlers, type IpcSender, type StreamEventMessage} from "../../main/electron/ipc.js";
import {Engine} from "../../main/engine/engine.js";
import {makeTempDir, repoRoot, testThreads} from "../helpers/paths.js";

const trustedUrlPrefix = "file:///opt/weft/resources/app.asar/dist/renderer/";
const appPage: IpcSender = {url: `${trustedUrlPrefix}index.html`, contentsId: 1};

/** Runs one stream through the handlers and returns every event it sent. */
async function streamEvents(handlers: IpcHandlers, input: unknown, sender = appPage, id = "s1"): Promise<unknown[]> {
    const sent: StreamEventMessage[] = [];
    await handlers.startStream("chat", sender, {id, input}, (message) => sent.push(message));
    assert.ok(sent.every((message) => message.id === id));
    return sent.map((message) => message.event);
}

function errorCode(envelope: IpcEnvelope): string | undefined {
    return envelope.ok ? undefined : envelope.error.code;
}

/** The error code of each event, or its type when it is not an error. */
function errorCodes(events: unknown[]): string[] {
    return events.map((event) => {
        const chatEvent = event as ChatEvent;
        return chatEvent.type === "error" ? chatEvent.error.code : chatEvent.type;
    });
}

/** Stands in for a loaded model: yields tokens until aborted, then ends with a `cancelled` error. */
function fakeEngine(): EngineApi & {aborted: boolean} {
    const fake = {
        aborted: false,
        async* chat(_input: unknown, signal: AbortSignal) {
            yield {type: "retrieval", citations: [], retrievalMs: 0};
            while (!signal.aborted) {
                yield {type: "token", text: "a"};
                await delay(2);
            }
            fake.aborted = true;
            yield {type: "error", error: {code: "cancelled", message: "cancelled"}};
        },
        listModels: async () => [{id: 42}]
    };
    return fake as unknown as EngineApi & {aborted: boolean};
}

/**
 * Loads the real preload in a fresh V8 context (no Node globals, as in a sandboxed preload) with a fake
 * `electron`. Values are structured-cloned across, as Electron's IPC and contextBridge do.
 */
async function loadPreload(handlers: IpcHandlers, sender = appPage): Promise<PreloadApi> {
    const bundle = await build({
        entryPoints: [path.join(repoRoot, "main/electron/preload.ts")],
        bundle: true, platform: "node", format: "cjs", external: ["electron"], write: false, logLevel: "silent"
    });
    const listeners: ((event: unknown, message: unknown) => void)[] = [];
    const ipcRenderer = {
        invoke: async (channel: string, input: unknown) => {
            const name = rpcNames.find((candidate) => ipcChannels.call(candidate) === channel);
            assert.ok(name != null, `unknown channel ${channel}`);
            return structuredClone(await handlers.call(name, sender, structuredClone(input)));
        },
        send: (channel: string, message: unknown) => {
            const name = streamNames.find((candidate) => ipcChannels.streamStart(candidate) === channel);
            if (name != null)
                void handlers.startStream(name, sender, structuredClone(message), (reply) => {
                    const copy = structuredClone(reply);
                    setImmediate(() => listeners.forEach((listener) => listener({}, copy)));
                });
            else if (channel === ipcChannels.streamCancel)
                handlers.cancelStream(sender, structuredClone(message));
            else
                assert.fail(`unknown channel ${channel}`);
        },
        on: (channel: string, listener: (event: unknown, message: unknown) => void) => {
            assert.equal(channel, ipcChannels.streamEvent);
            listeners.push(listener);
        }
    };

    let exposed: Record<string, (...args: unknown[]) => unknown> | undefined;
    const contextBridge = {
        exposeInMainWorld(name: string, api: Record<string, (...args: unknown[]) => unknown>) {
            assert.equal(name, preloadGlobalName);
            exposed = api;
        }
    };
    const module = {exports: {}};
    const require = (id: string) => {
        assert.equal(id, "electron", "a sandboxed preload can require only electron");
        return {contextBridge, ipcRenderer};
    };
    vm.runInNewContext(bundle.outputFiles[0]!.text, {require, module, exports: module.exports, queueMicrotask});
    assert.ok(exposed != null, "the preload exposed nothing");

    // contextBridge copies values between worlds and keeps only the message of an Error.
    const api: Record<string, unknown> = {};
    for (const [name, method] of Object.entries(exposed))
        api[name] = (input: unknown, onEvent?: (event: unknown) => void) => {
            const result = method(input, onEvent != null ? (event: unknown) => onEvent(structuredClone(event)) : undefined);
            if (typeof (result as Promise<unknown> | undefined)?.then === "function")
                return (result as Promise<unknown>).then(structuredClone, (error: {message: string}) => {
                    throw new Error(error.message);
                });

            return result;
        };

    return api as unknown as PreloadApi;
}

function chatThroughPreload(api: PreloadApi, input: unknown): {events: Promise<ChatEvent[]>, cancel(): void} {
    const events: ChatEvent[] = [];
    let handle!: {cancel(): void};
    const finished = new Promise<ChatEvent[]>((resolve) => {
        handle = api.chat(input as {question: string}, (event) => {
            events.push(event);
            if (event.type === "done" || event.type === "error")
                resolve(events);
        });
    });
    return {events: finished, cancel: () => handle.cancel()};
}

async function rejectionShape(promise: Promise<unknown>): Promise<{code: string, message: string}> {
    try {
        await promise;
    } catch (error) {
        assert.ok(error instanceof Error);
        return JSON.parse(error.message) as {code: string, message: string};
    }
    assert.fail("expected a rejection");
}

describe("Electron IPC handlers (real engine, no model)", () => {
    let temp: Awaited<ReturnType<typeof makeTempDir>>;
    let engine: Engine;
    let handlers: IpcHandlers;
    let notAModel: string;

    before(async () => {
        temp = await makeTempDir();
        engine = await Engine.open({dataDir: path.join(temp.dir, "data"), threads: testThreads, gpu: false});
        handlers = createIpcHandlers(engine, {trustedUrlPrefix});
        notAModel = path.join(temp.dir, "notes.gguf");
        await writeFile(notAModel, "this is not a model");
    });

    after(async () => {
        await engine.close();
        await temp.cleanup();
    });

    it("answers rpc calls in an envelope", async () => {
        assert.deepEqual(await handlers.call("listModels", appPage, {}), {ok: true, output: []});
        const status = await handlers.call("getStatus", appPage, {});
        assert.ok(status.ok);
        assert.equal((status.output as {dataDir: string}).dataDir, path.join(temp.dir, "data"));
    });

    it("keeps engine error codes", async () => {
        assert.equal(errorCode(await handlers.call("addModel", appPage, {path: notAModel})), "model_invalid");
        assert.equal(errorCode(await handlers.call("addModel", appPage, {path: path.join(temp.dir, "missing.gguf")})), "model_missing");
        assert.equal(errorCode(await handlers.call("selectModel", appPage, {id: "nope"})), "not_found");
    });

    it("rejects invalid input as bad_request", async () => {
        assert.equal(errorCode(await handlers.call("addModel", appPage, {})), "bad_request");
        assert.equal(errorCode(await handlers.call("addModel", appPage, {path: ""})), "bad_request");
        assert.equal(errorCode(await handlers.call("listModels", appPage, "nope")), "bad_request");
    });

    it("refuses pages other than the app's own", async () => {
        const strangers = [
            {url: "https://example.com/", contentsId: 2},
            {url: "file:///opt/weft/resources/app.asar/dist/renderer-evil/index.html", contentsId: 2},
            {url: null, contentsId: 1}
        ];
        for (const sender of strangers) {
            assert.equal(errorCode(await handlers.call("listModels", sender, {})), "unauthorized", String(sender.url));
            assert.deepEqual(errorCodes(await streamEvents(handlers, {question: "hi"}, sender)), ["unauthorized"]);
        }
    });

    it("ends a chat without a model in a no_model error", async () => {
        assert.deepEqual(errorCodes(await streamEvents(handlers, {question: "What is Weft?"})), ["no_model"]);
    });

    it("ends a chat with invalid input in a bad_request error", async () => {
        for (const input of [{question: ""}, {question: "hi", maxTokens: -1}, "hi"]) {
            assert.deepEqual(errorCodes(await streamEvents(handlers, input)), ["bad_request"], JSON.stringify(input));
        }
    });

    it("ignores a stream start without an id", async () => {
        const sent: unknown[] = [];
        await handlers.startStream("chat", appPage, {input: {question: "hi"}}, (message) => sent.push(message));
        assert.deepEqual(sent, []);
    });

    describe("through the real preload", () => {
        let api: PreloadApi;

        before(async () => {
            api = await loadPreload(handlers);
        });

        it("exposes one method per endpoint and nothing else", () => {
            assert.deepEqual(Object.keys(api).sort(), [...rpcNames, ...streamNames].sort());
        });

        it("unwraps results and rejects with the JSON of the error shape", async () => {
            assert.deepEqual(await api.listModels({}), []);
            assert.equal((await rejectionShape(api.addModel({path: notAModel}))).code, "model_invalid");
            assert.equal((await rejectionShape(api.addModel({path: ""}))).code, "bad_request");
        });

        it("pauses and resumes cache warming, and streams its status until cancelled", async () => {
            const events: CacheWarmEvent[] = [];
            let handle!: {cancel(): void};
            const ended = new Promise<void>((resolve) => {
                handle = api.watchCacheWarm({}, (event) => {
                    events.push(event);
                    if (event.type === "status" && event.status.state === "paused")
                        handle.cancel();
                    if (event.type === "done" || event.type === "error")
                        resolve();
                });
            });
            assert.equal((await api.pauseCacheWarm({})).state, "paused");
            await ended;
            assert.equal((await api.getStatus({})).cacheWarm.state, "paused");
            assert.equal((await api.resumeCacheWarm({})).state, "idle");
            assert.equal(events.at(-1)?.type, "done");
            assert.ok(events.every((event) => event.type !== "status" || CacheWarmStatus.safeParse(event.status).success));
        });

        it("streams a chat to its terminal event", async () => {
            const events = await chatThroughPreload(api, {question: "What is Weft?"}).events;
            assert.deepEqual(events.map((event) => event.type), ["error"]);
            assert.equal(events[0]!.type === "error" && events[0]!.error.code, "no_model");

            const invalid = await chatThroughPreload(api, {question: "  "}).events;
            assert.equal(invalid[0]!.type === "error" && invalid[0]!.error.code, "bad_request");
        });
    });
});

describe("Electron IPC handlers (fake engine)", () => {
    it("cancels a stream when the page asks", async () => {
        const engine = fakeEngine();
        const handlers = createIpcHandlers(engine, {trustedUrlPrefix});
        const sent: StreamEventMessage[] = [];
        const running = handlers.startStream("chat", appPage, {id: "a", input: {question: "hi"}}, (message) => {
            sent.push(message);
            if (sent.length === 3)
                handlers.cancelStream(appPage, {id: "a"});
        });
        await running;
        assert.ok(engine.aborted);
        assert.deepEqual(sent.at(-1), {id: "a", event: {type: "error", error: {code: "cancelled", message: "cancelled"}}});
    });

    it("cancels every stream of a page that is gone", async () => {
        const engine = fakeEngine();
        const handlers = createIpcHandlers(engine, {trustedUrlPrefix});
        const running = handlers.startStream("chat", appPage, {id: "a", input: {question: "hi"}}, () => {});
        await delay(10);
        handlers.cancelAllOf(appPage.contentsId);
        await running;
        assert.ok(engine.aborted);
    });

    it("stops generating when sending to the page fails", async () => {
        const engine = fakeEngine();
        const handlers = createIpcHandlers(engine, {trustedUrlPrefix});
        let sends = 0;
        await handlers.startStream("chat", appPage, {id: "a", input: {question: "hi"}}, () => {
            if (++sends > 2)
                throw new Error("Object has been destroyed");
        });
        assert.ok(engine.aborted);
    });

    it("turns an invalid engine result into an internal error", async () => {
        const handlers = createIpcHandlers(fakeEngine(), {trustedUrlPrefix});
        assert.equal(errorCode(await handlers.call("listModels", appPage, {})), "internal");
    });

    it("cancels through the preload's handle", async () => {
        const engine = fakeEngine();
        const api = await loadPreload(createIpcHandlers(engine, {trustedUrlPrefix}));
        const chat = chatThroughPreload(api, {question: "hi"});
        await delay(20);
        chat.cancel();
        const events = await chat.events;
        assert.ok(engine.aborted);
        assert.equal(events[0]!.type, "retrieval");
        assert.deepEqual(events.at(-1), {type: "error", error: {code: "cancelled", message: "cancelled"}});
    });
});
