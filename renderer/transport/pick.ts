import type {RawTransport} from "../../main/contract/index.js";
import type {ConnectionSource} from "./connection.js";
import {createIpcTransport, preloadApi} from "./ipc.js";
import {createSocketTransport, reloadOnNewToken, takeToken} from "./socket.js";

export type PickedTransport = {raw: RawTransport; connection: ConnectionSource};

/** Inside Electron the preload provides `window.weft`; in a browser opened by `weft serve`, use its socket. */
export function pickTransport(): PickedTransport {
    const api = preloadApi();
    if (api !== undefined) {
        const ipc = createIpcTransport(api);
        return {raw: ipc, connection: ipc.connection};
    }

    reloadOnNewToken();
    const socket = createSocketTransport({token: takeToken()});
    return {raw: socket, connection: socket.connection};
}
