// Pieces of the desktop shell that run without Electron: where the window reopens, and the utilityProcess adapter
// (with a fake UtilityProcess) that tells the engine process why its child went away.
import assert from "node:assert/strict";
import {EventEmitter} from "node:events";
import {readdir, writeFile} from "node:fs/promises";
import path from "node:path";
import {after, before, describe, it} from "node:test";
import {spawnUtilityEngine} from "../../main/electron/utility-engine.js";
import {defaultWindow, loadWindowState, placeOnScreen, saveWindowState} from "../../main/electron/window-state.js";
import {makeTempDir} from "../helpers/paths.js";

const laptop = {x: 0, y: 0, width: 1440, height: 900};
const external = {x: 1440, y: 0, width: 2560, height: 1440};

describe("window state", () => {
    let temp: Awaited<ReturnType<typeof makeTempDir>>;
    before(async () => {
        temp = await makeTempDir();
    });
    after(() => temp.cleanup());

    it("reopens where it was, and on screen when that display is gone", async () => {
        const file = path.join(temp.dir, "window-state.json");
        assert.deepEqual(await loadWindowState(file, [laptop]), defaultWindow);
        await saveWindowState(file, {x: 1600, y: 100, width: 2000, height: 1200, maximized: true});
        assert.deepEqual(await loadWindowState(file, [laptop, external]), {x: 1600, y: 100, width: 2000, height: 1200, maximized: true});
        // The external display was unplugged: no position (the system centres it), and it fits the laptop.
        assert.deepEqual(await loadWindowState(file, [laptop]), {width: 1440, height: 900, maximized: true});
        assert.deepEqual(placeOnScreen({x: -5000, y: 20, width: 800, height: 600, maximized: false}, [laptop]), {width: 800, height: 600, maximized: false});
    });

    it("falls back to the defaults on a damaged file and keeps it aside", async () => {
        const file = path.join(temp.dir, "damaged.json");
        await writeFile(file, "{\"width\": 12");
        assert.deepEqual(await loadWindowState(file, [laptop]), defaultWindow);
        assert.ok((await readdir(temp.dir)).some((name) => name.startsWith("damaged.json.corrupt-")));
    });
});

describe("utilityProcess adapter", () => {
    class FakeUtilityProcess extends EventEmitter {
        public posted: unknown[] = [];
        public killed = false;
        public postMessage(message: unknown) {
            this.posted.push(message);
        }
        public kill() {
            this.killed = true;
            return true;
        }
    }

    it("forks the host with the data folder and reports Electron's crash reason on exit", async () => {
        let forked: {modulePath: string; args: string[]; serviceName: string} | null = null;
        const fake = new FakeUtilityProcess();
        const child = spawnUtilityEngine((modulePath, args, options) => {
            forked = {modulePath, args, serviceName: options.serviceName};
            return fake as never;
        }, "/app/dist/electron/engine-host.js", "/data");
        assert.deepEqual(forked, {modulePath: "/app/dist/electron/engine-host.js", args: ["--data", "/data"], serviceName: "Weft engine"});

        const received: unknown[] = [];
        child.onMessage((message) => received.push(message));
        fake.emit("message", {type: "ready"});
        assert.deepEqual(received, [{type: "ready"}]);
        child.postMessage({type: "shutdown"});
        assert.deepEqual(fake.posted, [{type: "shutdown"}]);

        const reason = new Promise<string>((resolve) => child.onExit(resolve));
        fake.emit("exit", 11);
        child.noteGone("crashed", 11);
        assert.equal(await reason, "crashed, exit code 11");
        child.kill();
        assert.equal(fake.killed, true);
    });
});
