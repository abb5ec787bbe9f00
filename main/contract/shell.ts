import {z} from "zod";
import {EngineErrorShape} from "./errors.js";

/**
 * What the host around the engine tells the window. In the desktop app the engine runs in its own process: when
 * that process dies the shell sends `restarting` with the reason, restarts it, then `running` again. `modelsChanged`
 * follows a model added from the menu. In `weft serve` the engine is the host: it is always `running`.
 */
export const HostEvent = z.discriminatedUnion("type", [
    z.object({type: z.literal("state"), state: z.enum(["running", "restarting"]), reason: z.string().optional()}),
    z.object({type: z.literal("modelsChanged")}),
    z.object({type: z.literal("done")}),
    z.object({type: z.literal("error"), error: EngineErrorShape})
]);
export type HostEvent = z.infer<typeof HostEvent>;

export const shellEndpoints = {
    /** The desktop app's native folder picker; `weft serve` answers bad_request (a browser types the path). */
    pickFolder: {input: z.object({}), output: z.object({path: z.string().nullable()})},
    /** Opens a library document in the system's viewer (desktop app only; `weft serve` answers bad_request). */
    showInSystemViewer: {input: z.object({path: z.string().min(1).max(4096)}), output: z.object({opened: z.boolean()})}
} as const;

export const shellStreamEndpoints = {
    watchHost: {input: z.object({}), event: HostEvent}
} as const;
