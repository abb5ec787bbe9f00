// The desktop app's engine process without Electron: the real engine-host runs as a Node child (standing in for
// Electron's utilityProcess, which has the same message-passing shape) and the main process's EngineProcess drives it
// through the contract. A SIGKILL stands in for a crash in llama.cpp or the native addon.
import assert from "node:assert/strict";
import {type ChildProcess, fork} from "node:child_process";
import path from "node:path";
import {after, before, describe, it} from "node:test";
import type {CacheWarmEvent, HostEvent} from "../../main/contract/index.js";
import {type EngineChild, EngineProcess} from "../../main/electron/engine-process.js";
import {createIpcHandlers} from "../../main/electron/ipc.js";
import {makeTempDir, repoRoot} from "../helpers/paths.js";

const hostPath = path.join(repoRoot, "main/electron/engine-host.ts");

describe("the engine in its own process", () => {
    let temp: Awaited<ReturnType<typeof makeTempDir>>;
    let engine: EngineProcess;
    const children: ChildProcess[] = [];
    const exits: string[] = [];

    const spawn = (): EngineChild => {
        const child = fork(hostPath, ["--data", path.join(temp.dir, "data")], {
            execArgv: ["--import", "tsx"], env: {...process.env, WEFT_THREADS: "1"}, stdio: ["ignore", "ignore", "inherit", "ipc"]
        });
        children.push(child);
        return {
            postMessage: (message) => child.connected && child.send(message as object),
            onMessage: (listener) => child.on("message", listener),
            onExit: (listener) => child.once("exit", (code, signal) => {
                const reason = signal !== null ? `killed by ${signal}` : `exit code ${code}`;
                exits.push(reason);
                listener(reason);
            }),
            kill: () => child.kill("SIGKILL")
        };
    };

    before(async () => {
        temp = await makeTempDir();
        engine = new EngineProcess({spawn, restartDelaysMs: [50]});
        await engine.start();
    });

    after(async () => {
        await engine.close();
        for (const child of children)
            if (child.exitCode === null && child.signalCode === null)
                child.kill("SIGKILL");
        await temp.cleanup();
    });

    it("answers through the IPC handlers as the engine itself would", async () => {
        const handlers = createIpcHandlers(engine.api, {trustedUrlPrefix: "file:///app/"});
        const sender = {url: "file:///app/index.html", contentsId: 1};
        const created = await handlers.call("createConversation", sender, {title: "Kept"});
        assert.equal(created.ok, true, JSON.stringify(created));
        const bad = await handlers.call("renameConversation", sender, {id: "nope", title: ""});
        assert.equal(bad.ok ? "ok" : bad.error.code, "bad_request");
        assert.deepEqual(await engine.api.listModels({}), []);
    });

    it("ends the stream in flight with the crash's reason, restarts, and keeps what was saved", {timeout: 60_000}, async () => {
        const host: HostEvent[] = [];
        const hostWatch = new AbortController();
        const watching = (async () => {
            for await (const event of engine.api.watchHost({}, hostWatch.signal))
                host.push(event);
        })();

        const warm = new AbortController();
        const events: CacheWarmEvent[] = [];
        const stream = (async () => {
            for await (const event of engine.api.watchCacheWarm({}, warm.signal)) {
                events.push(event);
                if (events.length === 1)
                    children.at(-1)!.kill("SIGKILL");
            }
        })();
        await stream;
        assert.equal(events[0]?.type, "status");
        const last = events.at(-1)!;
        assert.equal(last.type, "error");
        assert.match(last.type === "error" ? last.error.message : "", /the engine stopped \(killed by SIGKILL\); it is restarting/);

        // Calls made while it restarts wait for the new process; what was saved before the crash is there.
        const conversations = await engine.api.listConversations({});
        assert.deepEqual(conversations.map((conversation) => conversation.title), ["Kept"]);
        assert.equal(children.length, 2);

        hostWatch.abort();
        await watching;
        const states = host.filter((event) => event.type === "state").map((event) => `${event.state}${event.reason ? `: ${event.reason}` : ""}`);
        assert.deepEqual(states, ["running", "restarting: killed by SIGKILL", "running"]);
    });

    it("closes the engine cleanly on quit", {timeout: 30_000}, async () => {
        await engine.close();
        assert.equal(exits.at(-1), "exit code 0");
        await assert.rejects(engine.api.listModels({}), /not running|stopped/);
    });
});
