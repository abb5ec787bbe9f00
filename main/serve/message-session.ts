import {
    ClientMessage, type EngineApi, EngineError, formatZodError, rpcEndpoints, type RpcName, type ServerMessage, streamEndpoints,
    type StreamName, toErrorShape
} from "../contract/index.js";

const isRpcName = (name: string): name is RpcName => Object.hasOwn(rpcEndpoints, name);
const isStreamName = (name: string): name is StreamName => Object.hasOwn(streamEndpoints, name);

export type MessageSession = {
    /** Handles one message from the client (any value: it is validated here). */
    receive(message: unknown): void;
    /** Cancels every stream of this client (it went away). */
    close(): void;
};

/**
 * The engine side of the message protocol (contract/wire.ts) over any channel: the serve WebSocket, or the
 * pipe between Electron's main process and the engine's utility process. Every message in and out is validated
 * against the contract; streams end when the client cancels them or goes away.
 */
export function createMessageSession(engine: EngineApi, send: (message: ServerMessage) => void, log: (line: string) => void): MessageSession {
    const streams = new Map<number, AbortController>();

    async function handleCall(id: number, method: string, input: unknown) {
        try {
            if (!isRpcName(method))
                throw new EngineError("bad_request", `unknown method "${method}"`);

            const endpoint = rpcEndpoints[method];
            const parsedInput = endpoint.input.safeParse(input);
            if (!parsedInput.success)
                throw new EngineError("bad_request", formatZodError(parsedInput.error));

            const call = engine[method] as (value: unknown) => Promise<unknown>;
            const output = (endpoint.output as {parse(value: unknown): unknown}).parse(await call.call(engine, parsedInput.data));
            send({type: "result", id, output});
        } catch (error) {
            send({type: "failure", id, error: toErrorShape(error)});
        }
    }

    async function handleStream(id: number, method: string, input: unknown) {
        if (!isStreamName(method)) {
            send({type: "failure", id, error: {code: "bad_request", message: `unknown stream "${method}"`}});
            return;
        }

        if (streams.has(id)) {
            send({type: "failure", id, error: {code: "bad_request", message: `stream id ${id} is already in use`}});
            return;
        }

        const endpoint = streamEndpoints[method];
        const parsedInput = endpoint.input.safeParse(input);
        if (!parsedInput.success) {
            send({type: "failure", id, error: {code: "bad_request", message: formatZodError(parsedInput.error)}});
            return;
        }

        const controller = new AbortController();
        streams.set(id, controller);
        try {
            const open = engine[method] as (input: unknown, signal: AbortSignal) => AsyncIterable<unknown>;
            for await (const event of open.call(engine, parsedInput.data, controller.signal))
                send({type: "event", id, event: endpoint.event.parse(event)});
        } catch (error) {
            send({type: "event", id, event: {type: "error", error: toErrorShape(error)}});
        } finally {
            streams.delete(id);
        }
    }

    return {
        receive(raw) {
            const parsed = ClientMessage.safeParse(raw);
            if (!parsed.success) {
                const reason = formatZodError(parsed.error);
                log(`dropped a malformed message: ${reason}`);
                send({type: "failure", id: -1, error: {code: "bad_request", message: `malformed message: ${reason}`}});
                return;
            }

            const message = parsed.data;
            if (message.type === "cancel")
                streams.get(message.id)?.abort();
            else if (message.type === "call")
                void handleCall(message.id, message.method, message.input);
            else
                void handleStream(message.id, message.method, message.input);
        },

        close() {
            for (const controller of streams.values())
                controller.abort();

            streams.clear();
        }
    };
}
