/**
 * A model's RoPE parameters, read from its GGUF, for re-positioning cached K rows by a position delta as llama.cpp's
 * K-shift does after `llama_memory_seq_add` (llama_kv_cache::build_graph_shift → build_rope_shift → ggml_rope_ext with
 * the delta as the position): K is stored after RoPE and a rotation by θ·p then by θ·d equals one by θ·(p + d), so a
 * chunk computed at positions 0..n-1 can be moved to k..k+n-1. The rotation itself runs natively
 * (native/src/kv_splice.cpp) or on the device by llama.cpp's K-shift (the resident tier); test/helpers/kv-reference.ts
 * holds the TypeScript reference both are checked against.
 *
 * For each cell row and each KV head, the first n_rot dimensions are rotated pairwise by
 * delta · freq_scale · freq_base^(-2i/n_rot) / freq_factor[i], i < n_rot/2; pairs are (2i, 2i+1) for NORM (llama)
 * and (i, i + n_rot/2) for NEOX.
 *
 * Anything that cannot be reproduced exactly (YaRN, LongRoPE, M-RoPE, sliding-window layers with their own base,
 * MLA, layers without RoPE, attention-factor scaling, architectures not checked against llama.cpp) is refused with a
 * {@link RopeUnsupportedError}, so the caller can fall back to recomputing.
 */
import {open} from "node:fs/promises";
import {ggmlTypeF32, ggmlTypeName} from "./kv-blob.js";

export class RopeUnsupportedError extends Error {
    override name = "RopeUnsupportedError";
}

export type RopeType = "norm" | "neox" | "none";

export type RopeParams = {
    architecture: string;
    /** "none": K carries no positional rotation (the shift only moves positions). */
    ropeType: RopeType;
    /** Dimensions rotated at the start of each head (`<arch>.rope.dimension_count`, default the head size). */
    nRot: number;
    /** Elements per K head (`<arch>.attention.key_length`, default embedding_length / head_count). */
    headDim: number;
    freqBase: number;
    /** 1 / `<arch>.rope.scaling.factor` for linear scaling, else 1. */
    freqScale: number;
    /** Per-pair divisors from the `rope_freqs.weight` tensor (Llama 3.x), or null. */
    freqFactors: Float32Array | null;
};

/**
 * Rope type per architecture, from llama_model_rope_type (src/llama-model.cpp), restricted to architectures whose
 * every layer uses the same plain RoPE over the first n_rot dimensions of each head (checked in src/models/*.cpp).
 * Others are refused rather than guessed: a wrong rotation silently degrades answers.
 */
const supportedArchitectures: Record<string, RopeType> = {
    // NORM: pairs of consecutive head values
    "llama": "norm", "mistral3": "norm", "baichuan": "norm", "internlm2": "norm", "xverse": "norm", "command-r": "norm",
    "olmo": "norm", "deepseek": "norm", "granite": "norm", "arcee": "norm", "ernie4_5": "norm", "ernie4_5-moe": "norm",
    // NEOX: pairs offset by n_rot/2
    "falcon": "neox", "stablelm": "neox", "qwen": "neox", "qwen2": "neox", "qwen2moe": "neox", "qwen3": "neox",
    "qwen3moe": "neox", "olmo2": "neox", "olmoe": "neox", "phi2": "neox", "phi3": "neox", "gemma": "neox",
    "starcoder2": "neox", "gptneox": "neox", "orion": "neox", "exaone": "neox", "seed_oss": "neox"
};

/** Architectures llama.cpp runs with RoPE that this module knows it cannot reproduce, with the reason. */
const refusedArchitectures: Record<string, string> = {
    "llama4": "some layers use no RoPE (NoPE) and others chunked attention",
    "smollm3": "every fourth layer uses no RoPE",
    "afmoe": "some layers use no RoPE",
    "smallthinker": "some layers use no RoPE",
    "gemma2": "sliding-window layers", "gemma3": "sliding-window layers with their own RoPE base",
    "gemma3n": "sliding-window layers and shared KV", "gemma4": "sliding-window layers with their own RoPE",
    "cohere2": "sliding-window layers without RoPE", "deepseek2": "multi-head latent attention (MLA)",
    "minicpm3": "multi-head latent attention (MLA)", "qwen2vl": "M-RoPE", "qwen3vl": "interleaved M-RoPE",
    "qwen3vlmoe": "interleaved M-RoPE", "qwen35": "interleaved M-RoPE and recurrent layers",
    "qwen35moe": "interleaved M-RoPE and recurrent layers", "gpt-oss": "sliding-window layers and YaRN",
    "exaone4": "sliding-window layers"
};

type MetadataValue = unknown;

/** Reads `a.b.c` from node-llama-cpp's nested metadata, or from a flat `{"a.b.c": value}` record. */
function lookup(metadata: Record<string, MetadataValue>, key: string): MetadataValue {
    if (key in metadata)
        return metadata[key];
    const parts = key.split(".");
    let node: MetadataValue = metadata;
    for (const part of parts) {
        if (node == null || typeof node !== "object" || Array.isArray(node))
            return undefined;
        node = (node as Record<string, MetadataValue>)[part];
    }
    return node;
}

function asNumber(value: MetadataValue, key: string): number | undefined {
    if (value === undefined)
        return undefined;
    if (typeof value === "bigint")
        return Number(value);
    if (typeof value === "number")
        return value;
    if (Array.isArray(value)) {
        const numbers = value.map((item) => asNumber(item, key));
        if (numbers.length > 0 && numbers.every((n) => n === numbers[0]))
            return numbers[0];
        throw new RopeUnsupportedError(`${key} differs per layer (${JSON.stringify(value.map(String))}), which the K shift does not handle`);
    }
    throw new RopeUnsupportedError(`${key} is not a number: ${JSON.stringify(value)}`);
}

export type GgufInfoLike = {
    metadata: object;
    tensorInfo?: readonly {name: string}[];
};

/**
 * RoPE parameters for the K shift from a model's GGUF metadata (node-llama-cpp `model.fileInfo.metadata`, or the
 * whole `model.fileInfo`, whose tensor list is then checked for RoPE frequency tensors). Throws
 * {@link RopeUnsupportedError} when the shift cannot be reproduced exactly.
 *
 * A model with a `rope_freqs.weight` tensor (Llama 3.x) needs its factors: pass them as `options.freqFactors`
 * (see {@link readRopeFreqFactors}).
 */
export function ropeParamsFromGguf(info: GgufInfoLike | object, options: {freqFactors?: Float32Array | null} = {}): RopeParams {
    const isFileInfo = "metadata" in info && typeof (info as GgufInfoLike).metadata === "object";
    const metadata = (isFileInfo ? (info as GgufInfoLike).metadata : info) as Record<string, MetadataValue>;
    const tensorNames = isFileInfo ? ((info as GgufInfoLike).tensorInfo ?? null)?.map((tensor) => tensor.name) ?? null : null;

    const architecture = lookup(metadata, "general.architecture");
    if (typeof architecture !== "string")
        throw new RopeUnsupportedError("the model metadata has no general.architecture");
    const key = (name: string) => `${architecture}.${name}`;
    const number = (name: string) => asNumber(lookup(metadata, key(name)), key(name));

    const refused = refusedArchitectures[architecture];
    if (refused != null)
        throw new RopeUnsupportedError(`cannot re-position cached keys for architecture "${architecture}": ${refused}`);
    let ropeType = supportedArchitectures[architecture];
    if (ropeType == null)
        throw new RopeUnsupportedError(`cannot re-position cached keys for architecture "${architecture}": its RoPE has not been checked against llama.cpp`);

    for (const name of ["attention.sliding_window", "attention.sliding_window_pattern", "rope.freq_base_swa", "rope.dimension_count_swa"]) {
        if (lookup(metadata, key(name)) !== undefined)
            throw new RopeUnsupportedError(`cannot re-position cached keys: the model has sliding-window layers (${key(name)})`);
    }
    if (lookup(metadata, key("attention.kv_lora_rank")) !== undefined)
        throw new RopeUnsupportedError("cannot re-position cached keys: the model uses multi-head latent attention (MLA)");
    if (lookup(metadata, key("rope.dimension_sections")) !== undefined)
        throw new RopeUnsupportedError("cannot re-position cached keys: the model uses M-RoPE");
    if (lookup(metadata, key("attention.rope_pattern")) !== undefined)
        throw new RopeUnsupportedError("cannot re-position cached keys: the model sets RoPE per layer");

    const scalingType = lookup(metadata, key("rope.scaling.type")) ?? "linear";
    if (scalingType !== "linear" && scalingType !== "none")
        throw new RopeUnsupportedError(`cannot re-position cached keys: RoPE scaling "${String(scalingType)}" is not supported (only none and linear)`);
    const attnFactor = number("rope.scaling.attn_factor");
    if (attnFactor !== undefined && attnFactor !== 1)
        throw new RopeUnsupportedError(`cannot re-position cached keys: RoPE attention factor ${attnFactor} (llama.cpp would scale the keys on every shift)`);
    const scalingFactor = number("rope.scaling.factor") ?? number("rope.scale_linear") ?? 0;
    const freqScale = scalingType === "none" || scalingFactor === 0 ? 1 : 1 / scalingFactor;

    // Granite uses rope.scaling.finetuned as the switch for RoPE altogether.
    if (architecture === "granite" && lookup(metadata, key("rope.scaling.finetuned")) === false)
        ropeType = "none";

    const headCount = number("attention.head_count");
    const embedding = number("embedding_length");
    const headDim = number("attention.key_length") ?? (headCount != null && embedding != null && headCount > 0 ? embedding / headCount : undefined);
    if (headDim == null || !Number.isInteger(headDim) || headDim <= 0)
        throw new RopeUnsupportedError("cannot re-position cached keys: the model metadata gives no usable head size");
    const nRot = number("rope.dimension_count") ?? headDim;
    if (!Number.isInteger(nRot) || nRot <= 0 || nRot % 2 !== 0 || nRot > headDim)
        throw new RopeUnsupportedError(`cannot re-position cached keys: rope.dimension_count ${nRot} does not fit a head of ${headDim}`);
    const freqBase = number("rope.freq_base") ?? 10000;
    if (!(freqBase > 0))
        throw new RopeUnsupportedError(`invalid rope.freq_base ${freqBase}`);

    if (tensorNames != null) {
        if (tensorNames.some((name) => name.startsWith("rope_factors_long") || name.startsWith("rope_factors_short")))
            throw new RopeUnsupportedError("cannot re-position cached keys: the model uses LongRoPE frequency factors");
        if (tensorNames.includes("rope_freqs.weight") && options.freqFactors == null)
            throw new RopeUnsupportedError("the model has RoPE frequency factors (rope_freqs.weight): read them with readRopeFreqFactors and pass them");
    }
    const freqFactors = options.freqFactors ?? null;
    if (freqFactors != null && freqFactors.length < nRot / 2)
        throw new RopeUnsupportedError(`RoPE frequency factors hold ${freqFactors.length} values, need ${nRot / 2}`);

    return {architecture, ropeType, nRot, headDim, freqBase, freqScale, freqFactors};
}

/**
 * Reads the `rope_freqs.weight` tensor (f32, one divisor per rotated pair) from a single-file GGUF, given
 * node-llama-cpp's file info (`readGgufFileInfo(path, {readTensorInfo: true})` or `model.fileInfo`). Returns null
 * when the model has none.
 */
export async function readRopeFreqFactors(modelPath: string, info: {tensorInfo?: readonly {name: string, dimensions: readonly (number | bigint)[], ggmlType: number, fileOffset: number | bigint, filePart?: number}[]}): Promise<Float32Array | null> {
    const tensor = info.tensorInfo?.find((candidate) => candidate.name === "rope_freqs.weight");
    if (tensor == null)
        return null;
    if (tensor.ggmlType !== ggmlTypeF32)
        throw new RopeUnsupportedError(`rope_freqs.weight is ${ggmlTypeName(tensor.ggmlType)}, expected f32`);
    if ((tensor.filePart ?? 1) !== 1)
        throw new RopeUnsupportedError("rope_freqs.weight is in another part of a split GGUF");
    const count = tensor.dimensions.reduce<number>((product, dimension) => product * Number(dimension), 1);
    const bytes = new Uint8Array(count * 4);
    const handle = await open(modelPath, "r");
    try {
        const {bytesRead} = await handle.read(bytes, 0, bytes.byteLength, Number(tensor.fileOffset));
        if (bytesRead !== bytes.byteLength)
            throw new RopeUnsupportedError("rope_freqs.weight lies past the end of the model file");
    } finally {
        await handle.close();
    }
    const view = new DataView(bytes.buffer);
    const out = new Float32Array(count);
    for (let i = 0; i < count; i++)
        out[i] = view.getFloat32(i * 4, true);
    return out;
}
