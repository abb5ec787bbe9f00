import {EngineError, formatZodError, toErrorShape} from "./errors.js";
import {
    type EngineClient, isTerminalEvent, rpcEndpoints, rpcNames, type StreamHandle, streamEndpoints, streamNames
} from "./endpoints.js";

/**
 * The untyped pipe a transport provides (WebSocket, Electron IPC, in-process).
 * `call` rejects with an EngineError; `stream` delivers raw events until a terminal one.
 */
export interface RawTransport {
    call(method: string, input: unknown): Promise<unknown>;
    stream(method: string, input: unknown, onEvent: (event: unknown) => void): {cancel(): void};
}

/**
 * Wraps a raw transport in the typed client. Inputs are validated before they leave, outputs and events
 * when they arrive, so a mismatched engine fails loudly at the boundary instead of deep in the UI.
 */
export function createEngineClient(raw: RawTransport): EngineClient {
    const client: Record<string, unknown> = {};

    for (const name of rpcNames) {
        const endpoint = rpcEndpoints[name];
        client[name] = async (input: unknown) => {
            const parsedInput = endpoint.input.safeParse(input);
            if (!parsedInput.success)
                throw new EngineError("bad_request", formatZodError(parsedInput.error));

            const output = await raw.call(name, parsedInput.data);
            const parsedOutput = endpoint.output.safeParse(output);
            if (!parsedOutput.success)
                throw new EngineError("internal", `engine sent an invalid ${name} result: ${formatZodError(parsedOutput.error)}`);

            return parsedOutput.data;
        };
    }

    for (const name of streamNames) {
        const endpoint = streamEndpoints[name];
        client[name] = (input: unknown, onEvent: (event: unknown) => void): StreamHandle => {
            let resolveFinished!: (event: {type: string}) => void;
            const finished = new Promise<{type: string}>((resolve) => {
                resolveFinished = resolve;
            });
            let ended = false;
            const deliver = (event: {type: string}) => {
                if (ended)
                    return;

                if (isTerminalEvent(event))
                    ended = true;

                onEvent(event);
                if (ended)
                    resolveFinished(event);
            };

            const parsedInput = endpoint.input.safeParse(input);
            if (!parsedInput.success) {
                queueMicrotask(() => deliver({
                    type: "error", error: {code: "bad_request", message: formatZodError(parsedInput.error)}
                } as {type: string}));
                return {cancel() {}, finished};
            }

            let handle: {cancel(): void} | undefined;
            try {
                handle = raw.stream(name, parsedInput.data, (event) => {
                    const parsedEvent = endpoint.event.safeParse(event);
                    if (parsedEvent.success)
                        deliver(parsedEvent.data);
                    else
                        deliver({
                            type: "error",
                            error: {code: "internal", message: `engine sent an invalid ${name} event: ${formatZodError(parsedEvent.error)}`}
                        } as {type: string});
                });
            } catch (error) {
                queueMicrotask(() => deliver({type: "error", error: toErrorShape(error)} as {type: string}));
            }

            return {
                cancel() {
                    if (!ended)
                        handle?.cancel();
                },
                finished
            };
        };
    }

    return client as EngineClient;
}
