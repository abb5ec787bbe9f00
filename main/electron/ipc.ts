import type {IpcMain, IpcMainEvent, IpcMainInvokeEvent, WebContents} from "electron";
import {z} from "zod";
import {
    type EngineApi, EngineError, type EngineErrorShape, formatZodError, ipcChannels, isTerminalEvent, type RpcName, rpcEndpoints,
    rpcNames, type StreamName, streamEndpoints, streamNames, toErrorShape
} from "../contract/index.js";

/** What an rpc call resolves with over IPC: Electron keeps only the message of a thrown error, so codes travel as data. */
export type IpcEnvelope = {ok: true, output: unknown} | {ok: false, error: EngineErrorShape};

/** What the main process sends on `ipcChannels.streamEvent`. */
export type StreamEventMessage = {id: string, event: unknown};

/** The frame's URL (null once it navigated away or died) and which webContents it belongs to. */
export type IpcSender = {url: string | null, contentsId: number};

export type IpcHandlers = ReturnType<typeof createIpcHandlers>;

const StreamStartMessage = z.object({id: z.string().min(1).max(200), input: z.unknown()});
const StreamCancelMessage = z.object({id: z.string()});

/**
 * The IPC side of the contract without Electron, so it can be tested against a real engine in plain Node.
 * Only pages under `trustedUrlPrefix` (the app's own renderer folder) may use the engine.
 */
export function createIpcHandlers(engine: EngineApi, options: {trustedUrlPrefix: string}) {
    const streamsByContents = new Map<number, Map<string, AbortController>>();

    const authorize = (sender: IpcSender) => {
        if (sender.url == null || !sender.url.startsWith(options.trustedUrlPrefix))
            throw new EngineError("unauthorized", "the engine answers only Weft's own window");
    };

    async function call(name: RpcName, sender: IpcSender, input: unknown): Promise<IpcEnvelope> {
        try {
            authorize(sender);
            const endpoint = rpcEndpoints[name];
            const parsedInput = endpoint.input.safeParse(input);
            if (!parsedInput.success)
                throw new EngineError("bad_request", formatZodError(parsedInput.error));

            const output = await (engine[name] as (input: unknown) => Promise<unknown>)(parsedInput.data);
            const parsedOutput = (endpoint.output as z.ZodTypeAny).safeParse(output);
            if (!parsedOutput.success)
                throw new EngineError("internal", `the engine returned an invalid ${name} result: ${formatZodError(parsedOutput.error)}`);

            return {ok: true, output: parsedOutput.data};
        } catch (error) {
            return {ok: false, error: toErrorShape(error)};
        }
    }

    /** Resolves once the stream has ended (or never started); events go to `send`, which may throw once the page is gone. */
    async function startStream(
        name: StreamName, sender: IpcSender, message: unknown, send: (message: StreamEventMessage) => void
    ): Promise<void> {
        const start = StreamStartMessage.safeParse(message);
        if (!start.success)
            return; // Without an id there is no one to answer.

        const {id} = start.data;
        const controller = new AbortController();
        const deliver = (event: unknown) => {
            try {
                send({id, event});
            } catch {
                controller.abort(); // The page is gone: stop generating for nobody.
            }
        };
        const fail = (error: unknown) => deliver({type: "error", error: toErrorShape(error)});

        try {
            authorize(sender);
        } catch (error) {
            fail(error);
            return;
        }

        const endpoint = streamEndpoints[name];
        const parsedInput = endpoint.input.safeParse(start.data.input);
        if (!parsedInput.success) {
            fail(new EngineError("bad_request", formatZodError(parsedInput.error)));
            return;
        }

        let owned = streamsByContents.get(sender.contentsId);
        if (owned == null) {
            owned = new Map();
            streamsByContents.set(sender.contentsId, owned);
        }
        // The preload never reuses an id; answering a duplicate would end the live stream in the page, so ignore it.
        if (owned.has(id))
            return;

        owned.set(id, controller);
        try {
            const open = engine[name] as (input: unknown, signal: AbortSignal) => AsyncIterable<unknown>;
            for await (const event of open.call(engine, parsedInput.data, controller.signal)) {
                const parsedEvent = endpoint.event.safeParse(event);
                if (!parsedEvent.success) {
                    controller.abort();
                    fail(new EngineError("internal", `the engine sent an invalid ${name} event: ${formatZodError(parsedEvent.error)}`));
                    return;
                }

                deliver(parsedEvent.data);
                if (isTerminalEvent(parsedEvent.data))
                    return;
            }

            fail(new EngineError("internal", `the engine ended the ${name} stream without a final event`));
        } catch (error) {
            fail(error);
        } finally {
            owned.delete(id);
            if (owned.size === 0)
                streamsByContents.delete(sender.contentsId);
        }
    }

    function cancelStream(sender: IpcSender, message: unknown): void {
        const cancel = StreamCancelMessage.safeParse(message);
        if (cancel.success)
            streamsByContents.get(sender.contentsId)?.get(cancel.data.id)?.abort();
    }

    function cancelAllOf(contentsId: number): void {
        for (const controller of streamsByContents.get(contentsId)?.values() ?? [])
            controller.abort();
    }

    function cancelAll(): void {
        for (const contentsId of streamsByContents.keys())
            cancelAllOf(contentsId);
    }

    return {call, startStream, cancelStream, cancelAllOf, cancelAll};
}

/** Wires the handlers to Electron. Returns `cancelAll` so quitting can stop generation before closing the engine. */
export function registerIpc(ipcMain: IpcMain, engine: EngineApi, options: {trustedUrlPrefix: string}): {cancelAll(): void} {
    const handlers = createIpcHandlers(engine, options);
    const watched = new WeakSet<WebContents>();

    const senderOf = (event: IpcMainEvent | IpcMainInvokeEvent): IpcSender => {
        const contents = event.sender;
        const contentsId = contents.id;
        if (!watched.has(contents)) {
            watched.add(contents);
            contents.once("destroyed", () => handlers.cancelAllOf(contentsId));
            // A reload keeps the webContents but the page that asked is gone.
            contents.on("did-start-navigation", (details) => {
                if (details.isMainFrame && !details.isSameDocument)
                    handlers.cancelAllOf(contentsId);
            });
        }

        return {url: event.senderFrame?.url ?? null, contentsId};
    };

    for (const name of rpcNames)
        ipcMain.handle(ipcChannels.call(name), (event, input: unknown) => handlers.call(name, senderOf(event), input));

    for (const name of streamNames)
        ipcMain.on(ipcChannels.streamStart(name), (event, message: unknown) => {
            const contents = event.sender;
            void handlers.startStream(name, senderOf(event), message, (reply) => {
                if (contents.isDestroyed())
                    throw new Error("the page is gone");

                contents.send(ipcChannels.streamEvent, reply);
            });
        });

    ipcMain.on(ipcChannels.streamCancel, (event, message: unknown) => handlers.cancelStream(senderOf(event), message));

    return {cancelAll: handlers.cancelAll};
}
