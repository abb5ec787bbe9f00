import type {WebSocket} from "ws";
import {
    ClientMessage, type EngineApi, EngineError, formatZodError, rpcEndpoints, type RpcName, type ServerMessage, streamEndpoints,
    type StreamName, toErrorShape
} from "../contract/index.js";

const isRpcName = (name: string): name is RpcName => Object.hasOwn(rpcEndpoints, name);
const isStreamName = (name: string): name is StreamName => Object.hasOwn(streamEndpoints, name);

/**
 * One browser connection: validates every message in and out against the contract, and cancels the
 * connection's streams when it closes, so a closed tab never leaves the model generating.
 */
export function attachSocketSession(socket: WebSocket, engine: EngineApi, log: (line: string) => void): void {
    const streams = new Map<number, AbortController>();
    const send = (message: ServerMessage) => {
        if (socket.readyState === socket.OPEN)
            socket.send(JSON.stringify(message));
    };

    socket.on("message", (data, isBinary) => {
        let message: ClientMessage;
        try {
            if (isBinary)
                throw new Error("binary messages are not part of the protocol");

            const parsed = ClientMessage.safeParse(JSON.parse(data.toString()));
            if (!parsed.success)
                throw new Error(formatZodError(parsed.error));

            message = parsed.data;
        } catch (error) {
            log(`dropped a malformed message: ${(error as Error).message}`);
            send({type: "failure", id: -1, error: {code: "bad_request", message: `malformed message: ${(error as Error).message}`}});
            return;
        }

        if (message.type === "cancel") {
            streams.get(message.id)?.abort();
            return;
        }

        if (message.type === "call")
            void handleCall(message.id, message.method, message.input);
        else
            void handleStream(message.id, message.method, message.input);
    });

    // Protocol errors (too big: 1009, invalid UTF-8: 1007, bad frames: 1002) close this socket only.
    socket.on("error", (error) => log(`socket closed on a protocol error: ${error.message}`));

    socket.on("close", () => {
        for (const controller of streams.values())
            controller.abort();

        streams.clear();
    });

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
}
