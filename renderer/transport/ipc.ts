import {EngineError, EngineErrorShape, type PreloadApi, type RawTransport} from "../../main/contract/index.js";
import type {ConnectionSource} from "./connection.js";

declare global {
    interface Window {
        weft?: PreloadApi;
    }
}

/**
 * The preload rejects with an Error whose message is the JSON of an EngineErrorShape. Electron may prefix
 * messages of errors that cross IPC ("Error invoking remote method …: Error: {…}"), so the JSON is also
 * looked for after the first brace; anything else becomes an `internal` error with the message as is.
 */
export function errorFromPreload(error: unknown): EngineError {
    if (error instanceof EngineError)
        return error;
    const message = error instanceof Error ? error.message : String(error);
    for (const candidate of [message, message.slice(Math.max(0, message.indexOf("{")))]) {
        try {
            const shape = EngineErrorShape.safeParse(JSON.parse(candidate));
            if (shape.success)
                return EngineError.fromShape(shape.data);
        } catch {
            // Not JSON: try the next candidate.
        }
    }
    return new EngineError("internal", message);
}

type AnyRpc = (input: unknown) => Promise<unknown>;
type AnyStream = (input: unknown, onEvent: (event: unknown) => void) => {cancel(): void};

/** RawTransport over Electron's `window.weft`; the typed client on top validates both directions. */
export function createIpcTransport(api: PreloadApi): RawTransport & {connection: ConnectionSource} {
    const methods = api as unknown as Record<string, unknown>;
    const method = <T>(name: string): T => {
        const fn = methods[name];
        if (typeof fn !== "function")
            throw new EngineError("not_found", `the preload has no method ${name}`);
        return fn as T;
    };

    return {
        async call(name, input) {
            try {
                return await method<AnyRpc>(name)(input);
            } catch (error) {
                throw errorFromPreload(error);
            }
        },

        stream(name, input, onEvent) {
            try {
                return method<AnyStream>(name)(input, onEvent);
            } catch (error) {
                throw errorFromPreload(error);
            }
        },

        connection: {
            transport: "ipc",
            get: () => ({kind: "open"}),
            subscribe: () => () => {},
            retryNow() {}
        }
    };
}

/** `window.weft` (the contract's preloadGlobalName) when running inside Electron. */
export function preloadApi(): PreloadApi | undefined {
    return window.weft;
}
