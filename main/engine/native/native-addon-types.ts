// The addon's types (native/src/addon.cpp's exports, typed by hand) and its specs' shapes, apart from native-addon.ts,
// which loads it and is the one module that touches node-llama-cpp's internals; native-addon.ts re-exports them all.
/** node-llama-cpp's native context object (`LlamaContext._ctx`), as the addon takes it. */
export type ContextHandle = object & {readonly __brand: "LlamaContextHandle"};
/** node-llama-cpp's native model object (`LlamaModel._model`), as the addon takes it. */
export type ModelHandle = object & {readonly __brand: "LlamaModelHandle"};

export type CaptureLayerOptions = {
    /** KV cells of the private context: at least the number of tokens captured at once. Allocates KV for every layer. */
    contextSize: number,
    /** CPU threads for the private context (set it: llama.cpp's default oversubscribes small machines). */
    threads: number,
    /**
     * Flash attention on the private context, as node-llama-cpp's `flashAttention` (default "auto", its default too).
     * Use the setting of the context whose cache the rows are compared with or spliced into: it changes layer
     * outputs by float rounding (not the result's layout).
     */
    flashAttention?: boolean | "auto",
    /** Tokens per llama_decode (one ubatch); default min(contextSize, 512). */
    batchSize?: number,
    /**
     * Position of each token (default 0..n-1). Stock llama.cpp requires them consecutive (any start); a build with
     * Weft's scattered-positions patch accepts gaps.
     */
    positions?: Int32Array
};

/** Layer K/V rows: `k[t * nEmbdK + i]` is dimension i of token t (K after RoPE at its position). */
export type LayerKV = {
    k: Float32Array,
    v: Float32Array,
    nTokens: number,
    /** n_embd_head_k * n_head_kv */
    nEmbdK: number,
    /** n_embd_head_v * n_head_kv */
    nEmbdV: number,
    layer: number,
    /** Name of the graph tensor the K rows were read from (e.g. "Kcur-1 (view)"), for diagnostics. */
    kTensor: string,
    vTensor: string,
    /** Time in llama_decode (the capture's graph up to the layer), of it copying the K/V out, and how many decodes. */
    decodeMs: number,
    copyMs: number,
    decodes: number
};

/** A chunk's K/V rows held in buffers of a context's KV cache type (GPU memory on a GPU build), made by {@link uploadResidentKv}. */
export type ResidentKvHandle = object & {readonly __brand: "ResidentKv"};

/**
 * A part already resident (see {@link ResidentKvHandle}): its cells are placed after the host parts with llama.cpp's
 * cell placement (Weft patch 0002) and its rows copied device to device; llama.cpp's K-shift rotates K by `delta`
 * at the next decode.
 */
export type SpliceResidentPart = {positions: Int32Array, delta: number, resident: ResidentKvHandle};
/**
 * Cells taken for positions whose rows a later decode writes (hkvd's labels, which its fused decode recomputes in full),
 * placed among the resident parts in their order so that cell order follows position order.
 */
export type SplicePlaceholderPart = {positions: Int32Array, delta: 0, placeholder: true};

/** One part of a spliced sequence: its cells' final positions, the K rotation to apply and its rows per layer. */
export type SplicePart = {
    /** Final position of each cell, in blob order. */
    positions: Int32Array,
    /** Positions the K rows move by (RoPE shift); 0 copies them as they are. */
    delta: number,
    /** Per layer: `cells * kRowSize` bytes. */
    k: Uint8Array[],
    /** Per layer: `cells * vRowSize` bytes, or with `vTrans` `nEmbdV` runs of `cells * vElemSize` bytes. */
    v: Uint8Array[]
};

/**
 * A chunk's KV codec container decoded straight into its cells, K at their positions (consecutive ones), in place of
 * rows: V in F16 rows only (flash attention on), and the spec's `codedFingerprint` names the model it must match.
 */
export type SpliceCodedPart = {positions: Int32Array, delta: number, coded: Uint8Array};

export type SpliceLayerShape = {kType: number, kRowSize: number, vType: number, vRowSize?: number, vElemSize?: number, nEmbdV?: number};

/** RoPE for the K shift: kind 0 none, 1 norm (pairs 2i, 2i+1), 2 neox (pairs i, i + nRot/2). */
export type SpliceRope = {kind: 0 | 1 | 2, nRot: number, headDim: number, freqBase: number, freqScale: number, freqFactors: Float32Array | null};

export type SpliceSpec = {
    nStream: number,
    /** The stream index the cells are listed under (the loader puts them in the target sequence's own stream). */
    stream: number,
    vTrans: boolean,
    layers: SpliceLayerShape[],
    rope: SpliceRope,
    parts: Array<SplicePart | SpliceCodedPart | SpliceResidentPart | SplicePlaceholderPart>,
    /** The model fingerprint (16 bytes) coded parts' containers must carry; required with coded parts. */
    codedFingerprint?: Uint8Array,
    /** Threads that build the state (K rotation and copies). */
    threads: number,
    /** Build it in pinned host memory when a GPU backend is loaded (default true). */
    pinned?: boolean,
    /**
     * Exact rows of a layer for every prompt position (row p = position p; K after RoPE at p), e.g. hkvd's capture
     * pass: they replace that layer's cached rows for every cell whose position they cover.
     */
    overrides?: Array<{layer: number, k: Float32Array, v: Float32Array}>
};

export type SpliceResult = {
    /** Bytes llama.cpp loaded (in place: the bytes written, as blobBytes). */
    bytesRead: number,
    /** Bytes of host parts' KV: the state blob's size, or the rows written straight into the cache in place. */
    blobBytes: number,
    /** Time to build the state, or to write the rows in place (rotation and copies). */
    buildMs: number,
    /** Time llama_state_seq_set_data took to load it (host-to-device copies on a GPU), or in place to take the cells. */
    setMs: number,
    /** Whether the state was built in pinned (page-locked) host memory. */
    pinned: boolean,
    /**
     * Whether the host parts' rows went straight into the cache's cells (a cache in host memory: a CPU build, flash
     * attention on, one stream) instead of through a state blob and llama_state_seq_set_data.
     */
    inPlace: boolean,
    /** Bytes of resident parts copied device to device into the cache (0 without resident parts). */
    residentBytes: number,
    /** Time the resident parts' placement and copies took. */
    residentMs: number,
    /** Copy operations the resident parts' rows took (one per part where every layer's rows step evenly). */
    residentCopies: number,
    /** Of residentMs: finding and marking the cells, queueing the copies, waiting for them. */
    residentPlaceMs: number,
    residentQueueMs: number,
    residentSyncMs: number,
    /** F16 bytes the coded parts decoded into their cells, and the decoding's time summed over threads. */
    codedBytes: number,
    codedMs: number
};

/** The rows {@link uploadResidentKv} keeps: every layer's K and V rows of `cellCount` cells, V not transposed. */
export type ResidentKvSpec = {
    cellCount: number,
    layers: Array<{kType: number, kRowSize: number, vType: number, vRowSize: number, k: Uint8Array, v: Uint8Array}>
};

/** hkvd's scoring input: the capture of the whole prefix and each chunk's cached rows of the same layer. */
export type DeviationSpec = {
    capturedK: Float32Array,
    capturedV: Float32Array,
    nEmbdK: number,
    nEmbdV: number,
    kType: number,
    vType: number,
    vTrans: boolean,
    rope: SpliceRope,
    /** `start`: position of the chunk's first cell once moved; `delta`: the K rotation that moves it there. */
    chunks: Array<{start: number, cellCount: number, delta: number, k: Uint8Array, v: Uint8Array}>,
    /** Threads scoring chunks in parallel (default 1). */
    threads?: number
};

export type LlamaFunctionsReport = {ok: boolean, missing: string[], library: string | null};

/** One layer's K and V for the KV codec: f16 values, K token-major; V token-major or, with `vTrans`, channel-major. */
export type KvCodecLayer = {k: Uint8Array, v: Uint8Array, nEmbdK: number, nEmbdV: number};

export type KvCodecEncodeSpec = {
    nTokens: number,
    vTrans: boolean,
    /** 0 (near-lossless) to levels.count - 1 (most compact). */
    level: number,
    /** The model fingerprint (16 bytes) the container is stamped with. */
    fingerprint: Uint8Array,
    /** Opaque bytes kept in the checksummed header (the cache key and tokens). */
    meta?: Uint8Array,
    layers: KvCodecLayer[],
    threads: number,
    /** Grouping modes the encoder may choose from per tensor (bit 0 direct, 1 delta to the previous token, 2 to a group anchor); default all. */
    modeMask?: number,
    /**
     * The model's RoPE (kind 1 norm, 2 neox; cell t at firstPos + t): K is coded un-rotated, which keeps each channel's
     * statistics across tokens (on stories260K it cut KL several-fold at equal size), and rotated back on decode.
     */
    rope?: {kind: 0 | 1 | 2, nRot: number, headDim: number, firstPos: number, freqBase: number, freqScale: number, freqFactors: Float32Array | null},
    /**
     * Encoder tuning for experiments: exponent of a channel's own spread in its step (default: the level's, 0.25 at
     * level 4 and 0.5 at the others), K/V step factors on top of the level's (1).
     */
    tuning?: {
        spreadExponent?: number, kStepFactor?: number, vStepFactor?: number,
        /** The first layers' step factor, and how many of every 32 layers (rounded up) are first, for K and V. */
        kFineFactor?: number, vFineFactor?: number, kFineLayers?: number, vFineLayers?: number,
        /** 0: a channel's spread is its RMS deviation from its mean; 1: 1.4826 x its median absolute deviation. */
        spreadMode?: number,
        /** K of the layers in this bit mask (layer i: bit i) takes kMaskFactor on its step. */
        kLayerMask?: number, kMaskFactor?: number,
        /**
         * Content-key heads (K coded un-rotated): a head whose low-frequency RoPE pairs' RMS spread is above contentRatio
         * times its high-frequency pairs' takes contentFactor on its steps (default: the level's).
         */
        contentFactor?: number, contentRatio?: number
    }
};

export type KvCodecEncodeResult = {bytes: Buffer, /** tensors coded in each mode */ modes: [number, number, number]};

export type KvCodecExpect = {
    /** 16 bytes; a container of another fingerprint is refused (reason "wrong-model"). */
    fingerprint?: Uint8Array,
    /** Most tokens accepted; the output is allocated only within it and the layer widths. */
    maxTokens?: number,
    /** The model's widths per layer; another shape is refused (reason "wrong-shape"). */
    layers?: Array<{nEmbdK: number, nEmbdV: number}>,
    threads?: number
};

export type KvCodecFailure = "truncated" | "bad-magic" | "wrong-version" | "bad-header" | "bad-sizes" | "wrong-model" | "wrong-shape" |
    "checksum" | "corrupt";

/** A container's header alone, every field checked (kvCodecPeek): what a splice needs to decode it into cells. */
export type KvCodecPeekResult =
    | {ok: true, level: number, nTokens: number, vTrans: boolean, kUnrotated: boolean, meta: Buffer, layers: Array<{nEmbdK: number, nEmbdV: number}>}
    | {ok: false, reason: KvCodecFailure, detail: string};

export type KvCodecDecodeResult =
    | {ok: true, level: number, nTokens: number, vTrans: boolean, meta: Buffer, layers: KvCodecLayer[]}
    | {ok: false, reason: KvCodecFailure, detail: string};

/**
 * One decode of a fused blend (Weft patch 0003): `tokens` at `positions` (one sequence, strictly increasing), split into
 * consecutive segments of `segLen[s]` tokens of which the `segKeep[s]` whose layer-`checkLayer` K deviates most from
 * their cells' cached K are recomputed through the remaining layers (`segKeep == segLen`: the whole segment, as for
 * new tokens, whose cells do not exist yet). At most the context's batch size; no logits.
 */
export type FusedBlendBatch = {tokens: Int32Array, positions: Int32Array, segLen: Int32Array, segKeep: Int32Array};

/** Where a decode's causal mask is built: see {@link setDecodeMaskMode} and {@link FusedBlendSpec.mask}. */
export type DecodeMaskMode = "auto" | "host" | "graph";

/**
 * A fused blend's decodes, run in order in one native job: each is queued without waiting for the device, so
 * llama.cpp's host work for the next one overlaps the device's work on this one, and the job synchronizes once.
 */
export type FusedBlendSpec = {
    batches: FusedBlendBatch[],
    checkLayer: number,
    /** Also return each token's deviation (squared K distance at the check layer). */
    deviation?: boolean,
    /**
     * Where the causal mask is built: "auto" (default) in the graph when the KV cache is in device memory, else on the
     * host; "host" / "graph" force one (both give the same mask: tests compare them on a CPU).
     */
    mask?: DecodeMaskMode,
    /**
     * Also return each decode's host phases (a diagnostic: the GPU benchmark asks, the product does not). The phases
     * measure each decode's wait for the device, so every decode then waits and none overlaps the next.
     */
    phases?: boolean
};

/** The phases of {@link FusedBlendResult.phaseMs}, in order (llama.h: LLAMA_WEFT_PHASES). */
export const fusedBlendPhases = ["update", "batch", "apply", "build", "alloc", "inputs", "submit", "wait"] as const;

export type FusedBlendResult = {
    /** Per decode: batch indices of the recomputed tokens, segment by segment, in position order within one. */
    selected: Int32Array[],
    /** Per decode with spec.deviation, else null. */
    deviation: Float32Array[] | null,
    /** Wall time of the whole job, the last synchronize included. */
    decodeMs: number,
    /** The final wait for the device. */
    syncMs: number,
    /** Host time of each llama_weft_blend_decode call (queueing it, without phases; the whole decode with them). */
    hostMsEach: Float64Array,
    /** With spec.phases: per decode, host ms of each of {@link fusedBlendPhases}. */
    phaseMs?: Float32Array[]
};

/** The addon's exports, typed by hand (native/src/addon.cpp). Every promise rejects with an Error on failure. */
export interface WeftNativeAddon {
    /** The sequence's KV state: u32 0xaf143cd8, i32 seqId, then the same body as a state file. */
    getSequenceState(context: ContextHandle, seqId: number): Promise<Buffer>;
    /** Replaces the sequence's KV with the blob; resolves to the bytes read, rejects (sequence cleared) on failure. */
    setSequenceState(context: ContextHandle, seqId: number, state: Uint8Array): Promise<number>;
    /** Builds one state from `spec.parts` (K rotated by each part's delta) and loads it into the sequence. */
    spliceSequenceState(context: ContextHandle, seqId: number, spec: SpliceSpec): Promise<SpliceResult>;
    /** Per chunk cell, in chunk order: squared distance of its moved cached K/V from the captured K/V at its position. */
    kvDeviation(spec: DeviationSpec): Promise<Float32Array>;
    /** Frees the pinned host buffer spliceSequenceState keeps between calls; returns its size in bytes. */
    releasePinnedScratch(): number;
    /** Copies rows into buffers of the context's KV cache type; they must match its cache (types, row sizes, layers). */
    residentKvUpload(context: ContextHandle, seqId: number, spec: ResidentKvSpec): Promise<ResidentKvHandle>;
    /** Frees a resident KV's buffers now; returns the bytes freed (0 when already released). */
    residentKvRelease(handle: ResidentKvHandle): number;
    /** Whether the loaded llama.cpp has Weft's patch 0002 (cell placement), which resident KVs need. */
    residentKvSupported(): boolean;
    captureLayerKV(model: ModelHandle, tokens: Uint32Array | Int32Array, layer: number, options: CaptureLayerOptions): Promise<LayerKV>;
    /** Frees the cached private capture contexts of one model (or all); returns how many. */
    releaseLayerCaptureContexts(model?: ModelHandle): number;
    /** Runs a fused blend's decodes on the sequence (see {@link FusedBlendSpec}); rejects with llama.cpp's reason. */
    fusedBlendDecode(context: ContextHandle, seqId: number, spec: FusedBlendSpec): Promise<FusedBlendResult>;
    /** Whether the loaded llama.cpp has Weft's patch 0003 (llama_weft_blend_decode). */
    fusedBlendSupported(): boolean;
    /** Where the context's ordinary decodes build their causal mask (patch 0008); false where the build lacks it. */
    setDecodeMaskMode(context: ContextHandle, mode: DecodeMaskMode): boolean;
    /** Whether a memory update (a K-shift) reserves the worst-case graph (patch 0009); the previous setting, null where the build lacks it. */
    setUpdateReserve(context: ContextHandle, reserve: boolean): boolean | null;
    /** Whether every llama.cpp / ggml function the addon needs was found in the loaded library (load a model first). */
    llamaFunctionsAvailable(): LlamaFunctionsReport;
    /** Encodes a chunk's KV into a codec container (native/src/kv_codec.h). */
    kvCodecEncode(spec: KvCodecEncodeSpec): Promise<KvCodecEncodeResult>;
    /** Decodes a container; a bad one resolves to {ok: false, reason}, never rejects for it. */
    kvCodecDecode(bytes: Uint8Array, expect: KvCodecExpect): Promise<KvCodecDecodeResult>;
    kvCodecDecodeSync(bytes: Uint8Array, expect: KvCodecExpect): KvCodecDecodeResult;
    kvCodecPeek(bytes: Uint8Array, expect: KvCodecExpect): KvCodecPeekResult;
    kvCodecLevels(): {count: number, defaultLevel: number, formatVersion: number};
}
