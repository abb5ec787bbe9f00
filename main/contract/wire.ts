import {z} from "zod";
import {EngineErrorShape} from "./errors.js";

/**
 * Messages on the `weft serve` WebSocket. Payloads are validated against the endpoint tables separately,
 * so one envelope schema serves every endpoint.
 */
export const ClientMessage = z.discriminatedUnion("type", [
    z.object({type: z.literal("call"), id: z.number().int(), method: z.string(), input: z.unknown()}),
    z.object({type: z.literal("stream"), id: z.number().int(), method: z.string(), input: z.unknown()}),
    z.object({type: z.literal("cancel"), id: z.number().int()})
]);
export type ClientMessage = z.infer<typeof ClientMessage>;

export const ServerMessage = z.discriminatedUnion("type", [
    z.object({type: z.literal("result"), id: z.number().int(), output: z.unknown()}),
    z.object({type: z.literal("failure"), id: z.number().int(), error: EngineErrorShape}),
    z.object({type: z.literal("event"), id: z.number().int(), event: z.unknown()})
]);
export type ServerMessage = z.infer<typeof ServerMessage>;

export const apiSocketPath = "/api/socket";

/** IPC channel names for the Electron shell; the preload exposes one method per endpoint over these. */
export const ipcChannels = {
    call: (method: string) => `weft:call:${method}`,
    streamStart: (method: string) => `weft:stream:${method}`,
    streamCancel: "weft:stream-cancel",
    streamEvent: "weft:stream-event"
} as const;
