import type {RpcInput, RpcName, RpcOutput, StreamEvent, StreamInput, StreamName} from "./endpoints.js";

/**
 * What the Electron preload exposes as `window.weft`: one method per endpoint, nothing else.
 * Each rpc method rejects with an Error whose message is the JSON of an EngineErrorShape,
 * because Electron's IPC keeps only the message of a thrown error.
 */
export type PreloadApi = {
    [N in RpcName]: (input: RpcInput<N>) => Promise<RpcOutput<N>>;
} & {
    [N in StreamName]: (input: StreamInput<N>, onEvent: (event: StreamEvent<N>) => void) => {cancel(): void};
};

export const preloadGlobalName = "weft";
