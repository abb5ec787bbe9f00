// Runs sandboxed and is bundled to one CommonJS file: it may use only `electron`'s renderer modules and what it bundles.
import {contextBridge, ipcRenderer} from "electron";
import {z} from "zod";
import {
    EngineErrorShape, formatZodError, ipcChannels, isTerminalEvent, type PreloadApi, preloadGlobalName, type RpcName, rpcEndpoints,
    rpcNames, type StreamName, streamEndpoints, streamNames, toErrorShape
} from "../contract/index.js";
import type {IpcEnvelope} from "./ipc.js";

const Envelope: z.ZodType<IpcEnvelope> = z.discriminatedUnion("ok", [
    z.object({ok: z.literal(true), output: z.unknown()}),
    z.object({ok: z.literal(false), error: EngineErrorShape})
]) as z.ZodType<IpcEnvelope>;
const StreamEventMessage = z.object({id: z.string(), event: z.unknown()});

/** PreloadApi's contract: rejections carry the JSON of an EngineErrorShape, the only part of an Error that crosses the bridge. */
const rejection = (shape: EngineErrorShape) => new Error(JSON.stringify(shape));

async function callRpc(name: RpcName, input: unknown): Promise<unknown> {
    const endpoint = rpcEndpoints[name];
    const parsedInput = endpoint.input.safeParse(input);
    if (!parsedInput.success)
        throw rejection({code: "bad_request", message: formatZodError(parsedInput.error)});

    let envelope: IpcEnvelope;
    try {
        const reply = Envelope.safeParse(await ipcRenderer.invoke(ipcChannels.call(name), parsedInput.data));
        if (!reply.success)
            throw new Error(`the main process sent an invalid ${name} reply`);

        envelope = reply.data;
    } catch (error) {
        throw rejection(toErrorShape(error));
    }

    if (!envelope.ok)
        throw rejection(envelope.error);

    const parsedOutput = (endpoint.output as z.ZodTypeAny).safeParse(envelope.output);
    if (!parsedOutput.success)
        throw rejection({code: "internal", message: `the engine sent an invalid ${name} result: ${formatZodError(parsedOutput.error)}`});

    return parsedOutput.data;
}

const streamListeners = new Map<string, (event: unknown) => void>();
let routing = false;
// A reload runs this preload again while the main process may still be finishing the old page's streams;
// a per-page prefix keeps their late events from landing in the new page's streams.
const pageNonce = Math.random().toString(36).slice(2, 10);
let nextStreamId = 0;

function routeStreamEvents(): void {
    if (routing)
        return;

    routing = true;
    ipcRenderer.on(ipcChannels.streamEvent, (_event, message: unknown) => {
        const parsed = StreamEventMessage.safeParse(message);
        if (parsed.success)
            streamListeners.get(parsed.data.id)?.(parsed.data.event);
    });
}

function startStream(name: StreamName, input: unknown, onEvent: (event: unknown) => void): {cancel(): void} {
    const endpoint = streamEndpoints[name];
    const parsedInput = endpoint.input.safeParse(input);
    if (!parsedInput.success) {
        const error = {code: "bad_request", message: formatZodError(parsedInput.error)};
        queueMicrotask(() => onEvent({type: "error", error}));
        return {cancel() {}};
    }

    const id = `${pageNonce}-${++nextStreamId}`;
    const deliver = (event: unknown) => {
        const parsedEvent = endpoint.event.safeParse(event);
        const checked = parsedEvent.success
            ? parsedEvent.data
            : {type: "error", error: {code: "internal", message: `the engine sent an invalid ${name} event: ${formatZodError(parsedEvent.error)}`}};
        if (!parsedEvent.success || isTerminalEvent(checked))
            streamListeners.delete(id);

        onEvent(checked);
    };

    routeStreamEvents();
    streamListeners.set(id, deliver);
    ipcRenderer.send(ipcChannels.streamStart(name), {id, input: parsedInput.data});

    return {
        cancel() {
            // The engine still answers with a final event, which ends the stream here.
            if (streamListeners.has(id))
                ipcRenderer.send(ipcChannels.streamCancel, {id});
        }
    };
}

const api: Record<string, unknown> = {};
for (const name of rpcNames)
    api[name] = (input: unknown) => callRpc(name, input);

for (const name of streamNames)
    api[name] = (input: unknown, onEvent: (event: unknown) => void) => startStream(name, input, onEvent);

contextBridge.exposeInMainWorld(preloadGlobalName, api as PreloadApi);
