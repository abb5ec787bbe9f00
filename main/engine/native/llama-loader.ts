// The one place that decides which llama.cpp build the engine runs on: Weft's patched local build when one is
// recorded for a backend this machine supports (scripts/build-llama.mjs), node-llama-cpp's prebuilt binaries
// otherwise. It returns, with the Llama, whether the blend path can run on it and why not.
import {getLlama, getLlamaGpuTypes, type Llama, LlamaLogLevel} from "node-llama-cpp";
import {available, type Capability, unavailable} from "./capability.js";
import {loadNativeAddon} from "./native-addon.js";
import {detectPatchedBuild, getPatchedLlama, type PatchedBuildInfo, type PatchedGpu} from "./patched-build.js";

export type GpuChoice = "auto" | PatchedGpu;

/** What the blend path runs on: the patched build that is loaded (the native addon loaded with it). */
export type BlendBuild = {build: PatchedBuildInfo};

export type LlamaLoad = {llama: Llama, blend: Capability<BlendBuild>};

/**
 * The patched build to load for `gpu`. For "auto", the backend node-llama-cpp would pick (the first GPU type this
 * machine supports, else the CPU): a patched build for another backend is not taken, since trading the GPU for the
 * blend path would make every question slower.
 */
async function patchedBuildFor(gpu: GpuChoice): Promise<Capability<PatchedBuildInfo>> {
    if (gpu !== "auto")
        return detectPatchedBuild({gpu});
    const supported = await getLlamaGpuTypes("supported").catch(() => [] as PatchedGpu[]);
    return detectPatchedBuild({gpu: supported.find((type): type is Exclude<PatchedGpu, false> => type !== false) ?? false});
}

/**
 * Whether the blend path can run on `llama` (started by anyone): it must be the patched local build for its backend and
 * the native addon must load.
 */
export function blendBuildOf(llama: Llama): Capability<BlendBuild> {
    if (llama.buildType !== "localBuild")
        return unavailable("the loaded llama.cpp is node-llama-cpp's prebuilt binary, not Weft's patched build");
    const build = detectPatchedBuild({gpu: llama.gpu});
    if (!build.available)
        return build;
    const addon = loadNativeAddon();
    if (!addon.available)
        return addon;
    return available({build: build.value});
}

/**
 * Starts llama.cpp, never building from source or downloading at run time: the patched local build when there is one
 * (a failure to load it falls back to the prebuilt binaries, with the reason), the prebuilt binaries with GPU
 * auto-detection (CUDA, Metal, Vulkan, else CPU) otherwise.
 */
export async function startLlama(options: {gpu: GpuChoice, threads: number}): Promise<LlamaLoad> {
    const patched = await patchedBuildFor(options.gpu);
    let reason = patched.available ? "" : patched.reason;
    if (patched.available) {
        try {
            const llama = await getPatchedLlama({gpu: patched.value.gpu, maxThreads: options.threads});
            return {llama, blend: blendBuildOf(llama)};
        } catch (error) {
            reason = `the patched llama.cpp build did not load: ${(error as Error).message}`;
        }
    }
    const llama = await getLlama({gpu: options.gpu, maxThreads: options.threads, build: "never", logLevel: LlamaLogLevel.error, progressLogs: false});
    const blend = blendBuildOf(llama);
    return {llama, blend: blend.available || llama.buildType === "localBuild" ? blend : unavailable(reason)};
}
