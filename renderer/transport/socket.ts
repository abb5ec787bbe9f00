import {apiSocketPath, EngineError, ServerMessage, type ClientMessage, type RawTransport} from "../../main/contract/index.js";
import type {ConnectionSource, ConnectionState} from "./connection.js";

const tokenStorageKey = "weft.token";
const connectionLost = "connection to the engine lost";
const backoffMs = [250, 500, 1000, 2000, 4000, 8000];

/**
 * The token `weft serve` prints in the URL fragment (`#token=HEX`). It is kept in sessionStorage so a reload
 * keeps working, and removed from the visible URL so it does not end up in screenshots or bookmarks.
 */
export function takeToken(): string | null {
    const fragment = new URLSearchParams(location.hash.replace(/^#/, ""));
    const fromHash = fragment.get("token");
    if (fromHash !== null && fromHash !== "") {
        try {
            sessionStorage.setItem(tokenStorageKey, fromHash);
        } catch {
            // Storage can be disabled; the token still works for this page load.
        }
        fragment.delete("token");
        const rest = fragment.toString();
        history.replaceState(history.state, "", `${location.pathname}${location.search}${rest === "" ? "" : `#${rest}`}`);
        return fromHash;
    }

    try {
        return sessionStorage.getItem(tokenStorageKey);
    } catch {
        return null;
    }
}

/**
 * Pasting the printed URL into a tab that already shows this page changes only the fragment, which does not
 * reload it: pick up the new token and start over with it.
 */
export function reloadOnNewToken(): void {
    window.addEventListener("hashchange", () => {
        if (new URLSearchParams(location.hash.replace(/^#/, "")).has("token")) {
            takeToken();
            location.reload();
        }
    });
}

export type SocketTransport = RawTransport & {connection: ConnectionSource; close(): void};

type PendingCall = {resolve(output: unknown): void; reject(error: EngineError): void};
type OpenStream = {onEvent(event: unknown): void};

/**
 * RawTransport over the `weft serve` WebSocket. Messages sent before the socket opens are queued;
 * when the socket closes, pending calls reject and open streams end with an error event, then it
 * reconnects with backoff.
 */
export function createSocketTransport(options: {token: string | null; baseUrl?: string}): SocketTransport {
    const base = new URL(options.baseUrl ?? location.href);
    const wsProtocol = base.protocol === "https:" ? "wss:" : "ws:";
    const token = options.token;

    let state: ConnectionState = token === null
        ? {kind: "unauthorized", reason: "This page was opened without its access token."}
        : {kind: "connecting", attempt: 1};
    const listeners = new Set<(state: ConnectionState) => void>();
    const setState = (next: ConnectionState) => {
        state = next;
        for (const listener of listeners)
            listener(next);
    };

    let socket: WebSocket | null = null;
    let nextId = 1;
    let failures = 0;
    let retryTimer: ReturnType<typeof setTimeout> | null = null;
    let closedByUs = false;
    const queue: ClientMessage[] = [];
    const calls = new Map<number, PendingCall>();
    const streams = new Map<number, OpenStream>();

    const send = (message: ClientMessage) => {
        if (socket !== null && socket.readyState === WebSocket.OPEN)
            socket.send(JSON.stringify(message));
        else
            queue.push(message);
    };

    const failEverything = (message: string) => {
        queue.length = 0;
        const failedCalls = [...calls.values()];
        const failedStreams = [...streams.values()];
        calls.clear();
        streams.clear();
        for (const call of failedCalls)
            call.reject(new EngineError("internal", message));
        for (const stream of failedStreams)
            stream.onEvent({type: "error", error: {code: "internal", message}});
    };

    const onMessage = (data: unknown) => {
        if (typeof data !== "string")
            return;
        let json: unknown;
        try {
            json = JSON.parse(data);
        } catch {
            console.warn("weft: ignoring a message that is not JSON");
            return;
        }
        const parsed = ServerMessage.safeParse(json);
        if (!parsed.success) {
            console.warn("weft: ignoring an invalid server message", parsed.error.issues);
            return;
        }

        const message = parsed.data;
        switch (message.type) {
            case "result": {
                const call = calls.get(message.id);
                calls.delete(message.id);
                call?.resolve(message.output);
                break;
            }
            case "failure": {
                const call = calls.get(message.id);
                if (call !== undefined) {
                    calls.delete(message.id);
                    call.reject(EngineError.fromShape(message.error));
                    break;
                }
                // A stream that could not start.
                const stream = streams.get(message.id);
                streams.delete(message.id);
                stream?.onEvent({type: "error", error: message.error});
                break;
            }
            case "event": {
                const stream = streams.get(message.id);
                if (stream === undefined)
                    break;
                const event = message.event as {type?: unknown} | null;
                if (event !== null && typeof event === "object" && (event.type === "done" || event.type === "error"))
                    streams.delete(message.id);
                stream.onEvent(message.event);
                break;
            }
        }
    };

    /**
     * A refused upgrade looks like any other failure to the WebSocket API, so ask over plain HTTP:
     * 401 means the token was refused; a server that answers HTTP but keeps refusing the socket
     * (twice in a row, never having opened it) is refusing this page too.
     */
    let refusals = 0;
    const probeRefused = async (): Promise<boolean> => {
        try {
            const response = await fetch(socketUrl("http").toString(), {cache: "no-store"});
            if (response.status === 401)
                return true;
            refusals++;
            return refusals >= 2;
        } catch {
            refusals = 0;
            return false;
        }
    };

    const socketUrl = (kind: "ws" | "http") => {
        const url = new URL(apiSocketPath, base);
        url.protocol = kind === "ws" ? wsProtocol : base.protocol;
        url.search = `?token=${encodeURIComponent(token ?? "")}`;
        url.hash = "";
        return url;
    };

    const connect = () => {
        retryTimer = null;
        if (token === null || closedByUs)
            return;

        let opened = false;
        const ws = new WebSocket(socketUrl("ws"));
        socket = ws;

        ws.addEventListener("open", () => {
            opened = true;
            failures = 0;
            refusals = 0;
            setState({kind: "open"});
            const pending = queue.splice(0);
            for (const message of pending)
                ws.send(JSON.stringify(message));
        });
        ws.addEventListener("message", (event) => onMessage(event.data));
        ws.addEventListener("close", (event) => {
            if (socket === ws)
                socket = null;
            failEverything(connectionLost);
            if (closedByUs)
                return;

            void (async () => {
                if (!opened && await probeRefused()) {
                    setState({
                        kind: "unauthorized",
                        reason: "The engine refused this page's access token; it may be from an earlier run of weft serve."
                    });
                    return;
                }
                failures++;
                const retryInMs = backoffMs[Math.min(failures - 1, backoffMs.length - 1)] ?? 8000;
                const reason = opened
                    ? `${connectionLost}${event.reason === "" ? "" : `: ${event.reason}`}`
                    : "cannot reach the engine";
                setState({kind: "reconnecting", attempt: failures, retryInMs, retryAt: Date.now() + retryInMs, reason});
                retryTimer = setTimeout(() => {
                    setState({kind: "connecting", attempt: failures + 1});
                    connect();
                }, retryInMs);
            })();
        });
    };

    connect();

    return {
        call(method, input) {
            if (state.kind === "unauthorized")
                return Promise.reject(new EngineError("unauthorized", state.reason));
            const id = nextId++;
            return new Promise<unknown>((resolve, reject) => {
                calls.set(id, {resolve, reject});
                send({type: "call", id, method, input});
            });
        },

        stream(method, input, onEvent) {
            if (state.kind === "unauthorized")
                throw new EngineError("unauthorized", state.reason);
            const id = nextId++;
            streams.set(id, {onEvent});
            send({type: "stream", id, method, input});
            return {
                cancel() {
                    if (!streams.has(id))
                        return;
                    const queued = queue.findIndex((message) => message.type === "stream" && message.id === id);
                    if (queued >= 0) {
                        // Never reached the engine: end it here.
                        queue.splice(queued, 1);
                        streams.delete(id);
                        onEvent({type: "error", error: {code: "cancelled", message: "cancelled before it started"}});
                        return;
                    }
                    send({type: "cancel", id});
                }
            };
        },

        close() {
            closedByUs = true;
            if (retryTimer !== null)
                clearTimeout(retryTimer);
            socket?.close();
            failEverything(connectionLost);
        },

        connection: {
            transport: "socket",
            get: () => state,
            subscribe(listener) {
                listeners.add(listener);
                return () => listeners.delete(listener);
            },
            retryNow() {
                if (retryTimer === null || state.kind !== "reconnecting")
                    return;
                clearTimeout(retryTimer);
                setState({kind: "connecting", attempt: failures + 1});
                connect();
            }
        }
    };
}
