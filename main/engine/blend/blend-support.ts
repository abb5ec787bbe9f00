/**
 * Whether a model can blend (its cached chunk KVs can be re-positioned exactly as llama.cpp would have computed them)
 * and, if not, why, in words that name the model: the blend path's gate and `weft models list`'s column. Reads the
 * RoPE frequency factors of Llama 3.x models (`rope_freqs.weight`) from the file, so those blend instead of being
 * refused.
 */
import path from "node:path";
import {readRopeFreqFactors, type RopeParams, ropeParamsFromGguf, RopeUnsupportedError} from "../kv/rope-params.js";

export type GgufFileInfoLike = {
    metadata: object;
    tensorInfo?: Parameters<typeof readRopeFreqFactors>[1]["tensorInfo"];
};

export type BlendSupport = {canBlend: true, rope: RopeParams} | {canBlend: false, reason: string};

/** The name a user knows the model by: its general.name unless that only repeats the architecture, else the file name. */
export function modelDisplayName(modelPath: string, info: GgufFileInfoLike): string {
    const general = (info.metadata as {general?: {name?: unknown, architecture?: unknown}}).general;
    const name = typeof general?.name === "string" ? general.name : null;
    return name != null && name !== "" && name !== general?.architecture ? name : path.basename(modelPath).replace(/\.gguf$/i, "");
}

/**
 * The model's RoPE parameters for re-positioning cached keys, or the reason they cannot be reproduced
 * ("model "NAME" (architecture A) cannot blend: …"). Never throws: a damaged factor tensor is a reason too.
 */
export async function blendSupportOf(modelPath: string, info: GgufFileInfoLike, options: {name?: string} = {}): Promise<BlendSupport> {
    const name = options.name ?? modelDisplayName(modelPath, info);
    const architecture = (info.metadata as {general?: {architecture?: unknown}}).general?.architecture;
    const refuse = (reason: string): BlendSupport =>
        ({canBlend: false, reason: `model "${name}"${typeof architecture === "string" ? ` (${architecture})` : ""} cannot blend: ${reason}`});
    try {
        const freqFactors = await readRopeFreqFactors(modelPath, info);
        return {canBlend: true, rope: ropeParamsFromGguf(info, {freqFactors})};
    } catch (error) {
        if (error instanceof RopeUnsupportedError)
            return refuse(error.message);
        return refuse(`its RoPE frequency factors could not be read (${(error as Error).message})`);
    }
}
