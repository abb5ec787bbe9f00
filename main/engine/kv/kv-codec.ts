/**
 * A chunk's KV body (kv-blob.ts) through the native KV codec (native/src/kv_codec.h): `encodeKvBody` makes a versioned
 * container stamped with the model fingerprint and a level, `decodeKvBody` checks it and gives the body back, or
 * throws a {@link KvCodecError} whose `reason` says why the container was refused (the cache drops it and recomputes).
 *
 * The container's meta (checksummed with its header) holds what the codec itself does not: the body's stream layout,
 * its cells (positions and sequence ids, compactly when they are the usual 0..n-1 of one sequence) and the caller's
 * own bytes (the chunk cache's key and tokens).
 */
import type {RopeParams} from "./rope-params.js";
import {isTransposed, type KvBody, type KvCell, ggmlTypeF16, ggmlTypeName} from "./kv-blob.js";
import {
    type KvCodecEncodeSpec, type KvCodecExpect, type KvCodecFailure, type KvCodecLayer, kvCodecDecode, kvCodecDecodeSync, kvCodecEncode, kvCodecPeek
} from "../native/native-addon.js";

export type {KvCodecFailure} from "../native/native-addon.js";

/** Levels 0 (near-lossless) to 5 (most compact); see bench/RESULTS.md for each one's size and KL. */
export const kvCodecLevelCount = 6;
export const kvCodecDefaultLevel = 4;

export class KvCodecError extends Error {
    override name = "KvCodecError";

    constructor(readonly reason: KvCodecFailure | "bad-meta" | "unsupported", detail: string) {
        super(`${reason}: ${detail}`);
    }
}

export type KvEncodeOptions = {
    level: number,
    /** The model fingerprint: 32 hex characters (chunk-cache.ts modelFingerprint). */
    fingerprint: string,
    /** The caller's bytes, kept in the checksummed header. */
    extra?: Uint8Array,
    threads: number,
    /** Grouping modes the encoder may try (bit 0 direct, 1 previous-token delta, 2 group-anchor delta); default all. */
    modeMask?: number,
    /**
     * The model's RoPE (rope-params.ts ropeParamsFromGguf): K is then coded un-rotated (back at position 0) and rotated
     * again on decode; without it, or when the cells are not consecutive positions, K is coded as stored.
     */
    rope?: RopeParams | null,
    tuning?: KvCodecEncodeSpec["tuning"]
};

export type KvDecodeOptions = {
    fingerprint: string,
    /** Most tokens a container may hold; the output is allocated only within it (default 65,536). */
    maxTokens?: number,
    /** The model's K/V widths per layer; another shape is refused. */
    layers?: Array<{nEmbdK: number, nEmbdV: number}>,
    threads: number
};

export type KvDecoded = {body: KvBody, level: number, extra: Uint8Array};

/**
 * A container checked but not decoded (kvCodecPeek: header, shape and meta): what a splice needs to decode it straight
 * into a sequence's cells. `firstPos` is the first cell's position when the cells are consecutive (null otherwise);
 * `kUnrotated` says K was coded back at position 0, so a decoder can turn it to any positions.
 */
export type KvPeeked = {
    level: number, nTokens: number, firstPos: number | null, vTrans: boolean, kUnrotated: boolean, extra: Uint8Array,
    layers: Array<{nEmbdK: number, nEmbdV: number}>
};

type Meta = {
    v: 1,
    nStream: number,
    stream: number,
    /** Cells as [firstPos, seqId] when they are firstPos.. consecutive in one sequence, else every cell. */
    cells: [number, number] | KvCell[]
};

const defaultMaxTokens = 65536;

export function fingerprintBytes(fingerprint: string): Uint8Array {
    if (!/^[0-9a-f]{32}$/.test(fingerprint))
        throw new KvCodecError("unsupported", `model fingerprint must be 32 hex characters, got "${fingerprint}"`);
    return Uint8Array.from(Buffer.from(fingerprint, "hex"));
}

function compactCells(cells: KvCell[]): Meta["cells"] {
    const first = cells[0]!;
    const consecutive = cells.every((cell, i) => cell.pos === first.pos + i && cell.seqIds.length === 1 && cell.seqIds[0] === first.seqIds[0]);
    return consecutive && first.seqIds.length === 1 ? [first.pos, first.seqIds[0]!] : cells;
}

function packMeta(meta: Meta, extra: Uint8Array): Uint8Array {
    const json = Buffer.from(JSON.stringify(meta));
    const out = new Uint8Array(4 + json.byteLength + extra.byteLength);
    new DataView(out.buffer).setUint32(0, json.byteLength, true);
    out.set(json, 4);
    out.set(extra, 4 + json.byteLength);
    return out;
}

function unpackMeta(bytes: Uint8Array, nTokens: number): {meta: Meta, extra: Uint8Array} {
    const bad = (detail: string) => new KvCodecError("bad-meta", detail);
    if (bytes.byteLength < 4)
        throw bad("meta is shorter than its length field");
    const length = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).getUint32(0, true);
    if (length > bytes.byteLength - 4)
        throw bad("meta's JSON runs past its end");
    let meta: Meta;
    try {
        meta = JSON.parse(Buffer.from(bytes.subarray(4, 4 + length)).toString("utf8")) as Meta;
    } catch (error) {
        throw bad(`meta is not JSON: ${(error as Error).message}`);
    }
    const integer = (value: unknown, min: number, max: number) => Number.isInteger(value) && (value as number) >= min && (value as number) <= max;
    if (meta?.v !== 1 || !integer(meta.nStream, 1, 256) || !integer(meta.stream, 0, meta.nStream - 1) || !Array.isArray(meta.cells))
        throw bad("meta has an unknown layout");
    if (meta.cells.length === 2 && typeof meta.cells[0] === "number") {
        if (!integer(meta.cells[0], -(2 ** 31), 2 ** 31 - nTokens) || !integer(meta.cells[1], 0, 255))
            throw bad("meta's cell range is out of bounds");
    } else if (meta.cells.length !== nTokens || !(meta.cells as unknown[]).every((cell) => {
        const c = cell as KvCell;
        return typeof c === "object" && c != null && integer(c.pos, -(2 ** 31), 2 ** 31 - 1) && Array.isArray(c.seqIds) && c.seqIds.length >= 1 &&
            c.seqIds.every((id) => integer(id, 0, 255));
    })) {
        throw bad("meta's cells do not match the container's tokens");
    }
    return {meta, extra: bytes.subarray(4 + length)};
}

/** Encodes a body of f16 K and V (either V layout) at a level. */
export async function encodeKvBody(body: KvBody, options: KvEncodeOptions): Promise<Uint8Array> {
    const nTokens = body.cells.length;
    if (nTokens === 0)
        throw new KvCodecError("unsupported", "an empty body has nothing to encode");
    const layers: KvCodecLayer[] = body.layers.map(({k, v}, il) => {
        if (k.type !== ggmlTypeF16 || v.type !== ggmlTypeF16)
            throw new KvCodecError("unsupported", `layer ${il} is ${ggmlTypeName(k.type)}/${ggmlTypeName(v.type)}: the codec takes f16 caches`);
        return {k: aligned(k.rows), v: aligned(isTransposed(v) ? v.data : v.rows), nEmbdK: k.rowSize / 2, nEmbdV: isTransposed(v) ? v.nEmbd : v.rowSize / 2};
    });
    const cells = compactCells(body.cells);
    const rope = options.rope;
    const ropeSpec: KvCodecEncodeSpec["rope"] = rope == null || rope.ropeType === "none" || typeof cells[0] !== "number" ? undefined : {
        kind: rope.ropeType === "norm" ? 1 : 2, nRot: rope.nRot, headDim: rope.headDim, firstPos: cells[0], freqBase: rope.freqBase,
        freqScale: rope.freqScale, freqFactors: rope.freqFactors
    };
    const meta = packMeta({v: 1, nStream: body.nStream, stream: body.stream, cells}, options.extra ?? new Uint8Array());
    const result = await kvCodecEncode({
        nTokens, vTrans: body.vTrans, level: options.level, fingerprint: fingerprintBytes(options.fingerprint), meta, layers,
        threads: options.threads, modeMask: options.modeMask, rope: ropeSpec, tuning: options.tuning
    });
    return result.bytes;
}

function aligned(bytes: Uint8Array): Uint8Array {
    return bytes.byteOffset % 2 === 0 ? bytes : Uint8Array.from(bytes);
}

function expectOf(options: KvDecodeOptions): KvCodecExpect {
    return {fingerprint: fingerprintBytes(options.fingerprint), maxTokens: options.maxTokens ?? defaultMaxTokens, layers: options.layers, threads: options.threads};
}

function bodyOf(result: Awaited<ReturnType<typeof kvCodecDecode>>): KvDecoded {
    if (!result.ok)
        throw new KvCodecError(result.reason, result.detail);
    const {meta, extra} = unpackMeta(result.meta, result.nTokens);
    const cells: KvCell[] = meta.cells.length === 2 && typeof meta.cells[0] === "number"
        ? Array.from({length: result.nTokens}, (_, i) => ({pos: (meta.cells[0] as number) + i, seqIds: [meta.cells[1] as number]}))
        : meta.cells as KvCell[];
    const body: KvBody = {
        nStream: meta.nStream,
        stream: meta.stream,
        cells,
        vTrans: result.vTrans,
        layers: result.layers.map((layer) => ({
            k: {type: ggmlTypeF16, rowSize: layer.nEmbdK * 2, rows: layer.k},
            v: result.vTrans
                ? {type: ggmlTypeF16, elemSize: 2, nEmbd: layer.nEmbdV, data: layer.v}
                : {type: ggmlTypeF16, rowSize: layer.nEmbdV * 2, rows: layer.v}
        }))
    };
    return {body, level: result.level, extra};
}

/** Checks a container's header and meta without decoding it; throws {@link KvCodecError} for one it refuses. */
export function peekKvContainer(bytes: Uint8Array, options: KvDecodeOptions): KvPeeked {
    const result = kvCodecPeek(bytes, expectOf(options));
    if (!result.ok)
        throw new KvCodecError(result.reason, result.detail);
    const {meta, extra} = unpackMeta(result.meta, result.nTokens);
    const firstPos = meta.cells.length === 2 && typeof meta.cells[0] === "number" ? meta.cells[0] : null;
    return {level: result.level, nTokens: result.nTokens, firstPos, vTrans: result.vTrans, kUnrotated: result.kUnrotated, extra, layers: result.layers};
}

/** Decodes a container off the JS thread; throws {@link KvCodecError} for a container it refuses. */
export async function decodeKvBody(bytes: Uint8Array, options: KvDecodeOptions): Promise<KvDecoded> {
    return bodyOf(await kvCodecDecode(bytes, expectOf(options)));
}

/** {@link decodeKvBody} on the calling thread. */
export function decodeKvBodySync(bytes: Uint8Array, options: KvDecodeOptions): KvDecoded {
    return bodyOf(kvCodecDecodeSync(bytes, expectOf(options)));
}
