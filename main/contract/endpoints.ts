import {z} from "zod";
import {CacheWarmEvent, CacheWarmStatus} from "./cache-warm.js";
import {ChatEvent, ChatRequest} from "./chat.js";
import {FolderInfo, IngestEvent, IngestRequest} from "./library.js";
import {EngineStatus, ListedModel, ModelInfo} from "./models.js";

/**
 * Every engine endpoint, in one place. The serve socket, the Electron preload and the renderer client
 * are all generated from these tables and validate both directions against them.
 */
export const rpcEndpoints = {
    getStatus: {input: z.object({}), output: EngineStatus},
    listModels: {input: z.object({}), output: z.array(ListedModel)},
    addModel: {input: z.object({path: z.string().min(1)}), output: ModelInfo},
    removeModel: {input: z.object({id: z.string().min(1)}), output: z.object({removed: z.boolean()})},
    selectModel: {input: z.object({id: z.string().min(1)}), output: ModelInfo},
    setEmbeddingModel: {input: z.object({id: z.string().min(1).nullable()}), output: EngineStatus},
    listFolders: {input: z.object({}), output: z.array(FolderInfo)},
    removeFolder: {input: z.object({id: z.string().min(1)}), output: z.object({removed: z.boolean()})},
    /** Stops background chunk-cache warming after the chunk in progress, until resumed. */
    pauseCacheWarm: {input: z.object({}), output: CacheWarmStatus},
    /** Carries on with paused warming (and runs a pass asked for while paused). */
    resumeCacheWarm: {input: z.object({}), output: CacheWarmStatus}
} as const;

/**
 * Streaming endpoints: one request, then a stream of events ending in a terminal event; the client may cancel.
 * A chat cancelled while generating ends with `done` and `cancelled: true`; one cancelled before it started
 * (still queued behind another question) ends with an `error` whose code is `cancelled`.
 */
export const streamEndpoints = {
    chat: {input: ChatRequest, event: ChatEvent},
    /** Adds a folder (or refreshes one already added) and indexes it incrementally. */
    ingestFolder: {input: IngestRequest, event: IngestEvent},
    /** Background chunk-cache warming: the status now, then every change, until cancelled (which ends in `done`). */
    watchCacheWarm: {input: z.object({}), event: CacheWarmEvent}
} as const;

export type RpcName = keyof typeof rpcEndpoints;
export type RpcInput<N extends RpcName> = z.input<(typeof rpcEndpoints)[N]["input"]>;
export type RpcInputParsed<N extends RpcName> = z.output<(typeof rpcEndpoints)[N]["input"]>;
export type RpcOutput<N extends RpcName> = z.output<(typeof rpcEndpoints)[N]["output"]>;

export type StreamName = keyof typeof streamEndpoints;
export type StreamInput<N extends StreamName> = z.input<(typeof streamEndpoints)[N]["input"]>;
export type StreamInputParsed<N extends StreamName> = z.output<(typeof streamEndpoints)[N]["input"]>;
export type StreamEvent<N extends StreamName> = z.output<(typeof streamEndpoints)[N]["event"]>;

export const rpcNames = Object.keys(rpcEndpoints) as RpcName[];
export const streamNames = Object.keys(streamEndpoints) as StreamName[];

/** Terminal events end a stream; nothing follows them. */
export function isTerminalEvent(event: {type: string}): boolean {
    return event.type === "done" || event.type === "error";
}

/** What the engine implements; transports adapt it. */
export type EngineApi = {
    [N in RpcName]: (input: RpcInputParsed<N>) => Promise<RpcOutput<N>>;
} & {
    [N in StreamName]: (input: StreamInputParsed<N>, signal: AbortSignal) => AsyncIterable<StreamEvent<N>>;
};

/** What a client (renderer, CLI, tests) sees: same endpoints, unparsed inputs, a handle to cancel streams. */
export type EngineClient = {
    [N in RpcName]: (input: RpcInput<N>) => Promise<RpcOutput<N>>;
} & {
    [N in StreamName]: (input: StreamInput<N>, onEvent: (event: StreamEvent<N>) => void) => StreamHandle;
};

export type StreamHandle = {
    cancel(): void;
    /** Resolves with the terminal event. */
    readonly finished: Promise<{type: string}>;
};
