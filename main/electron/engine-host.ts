// The engine's own process: Electron's utilityProcess in the app (tests run it as a Node child). It speaks the
// contract's message protocol with the main process, so a crash in llama.cpp or the addon takes this process down,
// not the window. Arguments: --data DIR.
import type {ServerMessage} from "../contract/index.js";
import {toErrorShape} from "../contract/index.js";
import {Engine} from "../engine/engine.js";
import {createMessageSession} from "../serve/message-session.js";

/** What the host sends besides the protocol's messages. */
export type HostControlMessage = {type: "ready"} | {type: "startFailed", message: string};
/** What the main process sends besides the protocol's messages. */
export type HostCommand = {type: "shutdown"};

type Channel = {post(message: unknown): void; listen(listener: (message: unknown) => void): void};

/** Electron's parentPort in a utility process, else Node's IPC channel of a forked child. */
function parentChannel(): Channel {
    const parentPort = (process as NodeJS.Process & {parentPort?: {postMessage(m: unknown): void; on(e: "message", l: (e: {data: unknown}) => void): void}}).parentPort;
    if (parentPort != null)
        return {post: (message) => parentPort.postMessage(message), listen: (listener) => parentPort.on("message", (event) => listener(event.data))};
    if (process.send != null)
        return {post: (message) => process.send!(message), listen: (listener) => process.on("message", listener)};
    throw new Error("engine-host must run as a utility process or a forked child");
}

function argument(name: string): string | undefined {
    const index = process.argv.indexOf(name);
    return index >= 0 ? process.argv[index + 1] : undefined;
}

async function main(): Promise<void> {
    const channel = parentChannel();
    const dataDir = argument("--data");
    if (dataDir == null) {
        channel.post({type: "startFailed", message: "no --data folder given"} satisfies HostControlMessage);
        process.exit(2);
    }

    let engine: Engine;
    try {
        engine = await Engine.open({dataDir});
    } catch (error) {
        channel.post({type: "startFailed", message: toErrorShape(error).message} satisfies HostControlMessage);
        process.exit(1);
    }

    const log = (line: string) => console.log(`weft engine: ${line}`);
    const session = createMessageSession(engine, (message: ServerMessage) => channel.post(message), log);
    let closing = false;
    channel.listen((message) => {
        if ((message as HostCommand | null)?.type === "shutdown") {
            if (closing)
                return;
            closing = true;
            session.close();
            void engine.close().finally(() => process.exit(0));
            return;
        }
        session.receive(message);
    });
    channel.post({type: "ready"} satisfies HostControlMessage);

    // Loading the model and warming the library's caches happen after the window can already talk to the engine.
    void engine.warmUp()
        .catch((error: unknown) => log(`warming up failed: ${toErrorShape(error).message}`))
        .finally(() => {
            engine.startCacheWarming(log);
            void engine.maintainLibrary(log).catch((error: unknown) => log(`keeping the library current failed: ${toErrorShape(error).message}`));
        });
}

void main();
