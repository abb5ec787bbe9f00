import {EngineError, EngineErrorShape, type PreloadApi, type RawTransport} from "../../main/contract/index.js";
import type {ConnectionSource} from "./connection.js";

declare global {
    interface Window {
        weft?: PreloadApi;
    }
}

/** The preload rejects with an Error whose message is the JSON of an EngineErrorShape. */
export function errorFromPreload(error: unknown): EngineError {
    if (error instanceof EngineError)
        return error;
    const message = error instanceof Error ? error.message : String(error);
    try {
        const shape = EngineErrorShape.safeParse(JSON.parse(message));
        if (shape.success)
            return EngineError.fromShape(shape.data);
    } catch {
        // Not JSON: fall through.
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
