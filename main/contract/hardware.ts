import {z} from "zod";
import {Backend} from "./stats.js";

const bytes = z.number().int().nonnegative();

/** The backend llama.cpp runs on and its GPUs (none on the CPU backend). */
export const Hardware = z.object({
    backend: Backend,
    gpuNames: z.array(z.string()),
    /** 0 on the CPU backend. */
    vramTotalBytes: bytes,
    vramUsedBytes: bytes,
    threads: z.number().int().positive()
});
export type Hardware = z.infer<typeof Hardware>;

export const hardwareEndpoints = {
    /** Starts llama.cpp if it has not started yet. */
    getHardware: {input: z.object({}), output: Hardware}
} as const;
