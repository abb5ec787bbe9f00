import type {Llama} from "node-llama-cpp";
import type {Hardware} from "../contract/index.js";
import {backendOf} from "./llama-runtime.js";

/** What the Models view shows about the machine: backend, GPU names and memory. */
export async function describeHardware(llama: Llama, threads: number): Promise<Hardware> {
    if (llama.gpu === false)
        return {backend: "cpu", gpuNames: [], vramTotalBytes: 0, vramUsedBytes: 0, threads};
    const [gpuNames, vram] = await Promise.all([llama.getGpuDeviceNames(), llama.getVramState()]);
    return {backend: backendOf(llama), gpuNames, vramTotalBytes: Math.round(vram.total), vramUsedBytes: Math.round(vram.used), threads};
}
