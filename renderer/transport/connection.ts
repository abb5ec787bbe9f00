/** How the renderer reaches the engine, as the header shows it. */
export type ConnectionState =
    | {kind: "connecting"; attempt: number}
    | {kind: "open"}
    | {kind: "reconnecting"; attempt: number; retryInMs: number; retryAt: number; reason: string}
    | {kind: "unauthorized"; reason: string};

export type TransportKind = "socket" | "ipc";

/** A transport's connection, observable; IPC is always open, the socket comes and goes. */
export interface ConnectionSource {
    readonly transport: TransportKind;
    get(): ConnectionState;
    /** Calls `listener` on every change; returns the unsubscribe function. */
    subscribe(listener: (state: ConnectionState) => void): () => void;
    /** Skips the backoff wait and tries to connect now (no-op when open). */
    retryNow(): void;
}
