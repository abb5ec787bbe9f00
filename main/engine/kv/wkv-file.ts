// The `.wkv` file of one chunk's KV: "WEFTKV\0\x01" | u32 format version | u32 header length | JSON header | KV body |
// sha256(header+body). The body is a llama.cpp sequence-state body (kv-blob.ts). Decoding checks magic, version,
// sizes, the key and the checksum, and says which failed.
import {createHash} from "node:crypto";
import {isTransposed, type KvBody, kvBodySize, parseKvBody} from "./kv-blob.js";

export const wkvMagic = Buffer.from("WEFTKV\0\x01", "latin1");
export const wkvFormatVersion = 1;
const prefixBytes = wkvMagic.byteLength + 8;
const digestBytes = 32;
const maxHeaderBytes = 64 * 1024 * 1024;

export type ChunkKey = {
    fingerprint: string;
    /** A hash of the chunk's token ids (hex or another filename-safe string). */
    chunkHash: string;
    promptFormatVersion: string | number;
};

export type MissReason =
    | "absent" | "bad-key" | "bad-magic" | "wrong-version" | "truncated" | "bad-header" | "bad-sizes" | "checksum"
    | "wrong-model" | "wrong-chunk" | "wrong-prompt-format" | "bad-body" | "io-error"
    // wkv-open.ts: a FIFO, device or link in place of the file; another model's layout; cells not at 1..n.
    | "not-a-file" | "wrong-layout" | "bad-positions";

/** The `.wkv` JSON header. */
export type WkvHeader = {
    fingerprint: string;
    chunkHash: string;
    promptFormatVersion: string;
    nTokens: number;
    tokens: number[];
    nStream: number;
    nLayer: number;
    vTrans: boolean;
    /** Per layer: K [type, rowSize]; V [type, rowSize] or, transposed, [type, elemSize, nEmbd]. */
    layers: {k: [number, number], v: [number, number] | [number, number, number]}[];
    bodyBytes: number;
};

/** A `.wkv` file that fails a check, and which. */
export class WkvMiss extends Error {
    constructor(readonly reason: MissReason, detail: string) {
        super(detail);
    }
}

export function layerShapes(body: KvBody): WkvHeader["layers"] {
    return body.layers.map(({k, v}) => ({
        k: [k.type, k.rowSize],
        v: isTransposed(v) ? [v.type, v.elemSize, v.nEmbd] : [v.type, v.rowSize]
    }));
}

/** The file's pieces (written in one writev) and its size, for `body` already serialized as `bodyBytes`. */
export function encodeWkv(key: ChunkKey, tokens: Int32Array, body: KvBody, bodyBytes: Uint8Array): {parts: Uint8Array[], bytes: number} {
    const header: WkvHeader = {
        fingerprint: key.fingerprint,
        chunkHash: key.chunkHash,
        promptFormatVersion: String(key.promptFormatVersion),
        nTokens: tokens.length,
        tokens: Array.from(tokens),
        nStream: body.nStream,
        nLayer: body.layers.length,
        vTrans: body.vTrans,
        layers: layerShapes(body),
        bodyBytes: bodyBytes.byteLength
    };
    const headerBytes = Buffer.from(JSON.stringify(header), "utf8");
    const prefix = Buffer.alloc(prefixBytes);
    wkvMagic.copy(prefix, 0);
    prefix.writeUInt32LE(wkvFormatVersion, wkvMagic.byteLength);
    prefix.writeUInt32LE(headerBytes.byteLength, wkvMagic.byteLength + 4);
    const digest = createHash("sha256").update(headerBytes).update(bodyBytes).digest();
    return {parts: [prefix, headerBytes, bodyBytes, digest], bytes: prefixBytes + headerBytes.byteLength + bodyBytes.byteLength + digestBytes};
}

/**
 * Decodes and validates a `.wkv` file against the key it was looked up by. Throws a {@link WkvMiss} whose
 * `reason` says what failed.
 */
export function decodeWkv(bytes: Uint8Array, key: ChunkKey): {header: WkvHeader, body: KvBody, tokens: Int32Array} {
    if (bytes.byteLength < prefixBytes + digestBytes)
        throw new WkvMiss(bytes.byteLength >= wkvMagic.byteLength && !startsWithMagic(bytes) ? "bad-magic" : "truncated",
            `the file has only ${bytes.byteLength} bytes`);
    if (!startsWithMagic(bytes))
        throw new WkvMiss("bad-magic", "not a Weft KV cache file (bad magic)");
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    const version = view.getUint32(wkvMagic.byteLength, true);
    if (version !== wkvFormatVersion)
        throw new WkvMiss("wrong-version", `format version ${version}, expected ${wkvFormatVersion}`);
    const headerLength = view.getUint32(wkvMagic.byteLength + 4, true);
    if (headerLength > maxHeaderBytes)
        throw new WkvMiss("bad-sizes", `header length ${headerLength} is implausible`);
    if (prefixBytes + headerLength + digestBytes > bytes.byteLength)
        throw new WkvMiss("truncated", `header of ${headerLength} bytes runs past the end of a ${bytes.byteLength}-byte file`);

    let header: WkvHeader;
    try {
        header = JSON.parse(Buffer.from(bytes.buffer, bytes.byteOffset + prefixBytes, headerLength).toString("utf8")) as WkvHeader;
    } catch (error) {
        throw new WkvMiss("bad-header", `header is not JSON: ${(error as Error).message}`);
    }
    if (!isHeader(header))
        throw new WkvMiss("bad-header", "header lacks required fields");

    const expected = prefixBytes + headerLength + header.bodyBytes + digestBytes;
    if (bytes.byteLength < expected)
        throw new WkvMiss("truncated", `file has ${bytes.byteLength} bytes, header promises ${expected}`);
    if (bytes.byteLength > expected)
        throw new WkvMiss("bad-sizes", `file has ${bytes.byteLength} bytes, header promises ${expected}`);

    const checked = bytes.subarray(prefixBytes, prefixBytes + headerLength + header.bodyBytes);
    const digest = createHash("sha256").update(checked).digest();
    if (!digest.equals(bytes.subarray(expected - digestBytes, expected)))
        throw new WkvMiss("checksum", "checksum mismatch: the file is damaged");

    if (header.fingerprint !== key.fingerprint)
        throw new WkvMiss("wrong-model", `file belongs to model ${header.fingerprint}, expected ${key.fingerprint}`);
    if (header.chunkHash !== key.chunkHash)
        throw new WkvMiss("wrong-chunk", `file holds chunk ${header.chunkHash}, expected ${key.chunkHash}`);
    if (header.promptFormatVersion !== String(key.promptFormatVersion))
        throw new WkvMiss("wrong-prompt-format", `file has prompt format ${header.promptFormatVersion}, expected ${String(key.promptFormatVersion)}`);

    let body: KvBody;
    try {
        body = parseKvBody(bytes.subarray(prefixBytes + headerLength, prefixBytes + headerLength + header.bodyBytes));
    } catch (error) {
        throw new WkvMiss("bad-body", `KV body does not parse: ${(error as Error).message}`);
    }
    if (header.nTokens !== header.tokens.length || header.nTokens !== body.cells.length || header.nLayer !== body.layers.length ||
        header.vTrans !== body.vTrans || header.nStream !== body.nStream || kvBodySize(body) !== header.bodyBytes ||
        JSON.stringify(header.layers) !== JSON.stringify(layerShapes(body)))
        throw new WkvMiss("bad-sizes", "header does not describe the KV body");
    return {header, body, tokens: Int32Array.from(header.tokens)};
}

function startsWithMagic(bytes: Uint8Array): boolean {
    return bytes.byteLength >= wkvMagic.byteLength && wkvMagic.equals(bytes.subarray(0, wkvMagic.byteLength));
}

function isHeader(value: unknown): value is WkvHeader {
    if (value == null || typeof value !== "object")
        return false;
    const h = value as Record<string, unknown>;
    const count = (x: unknown) => typeof x === "number" && Number.isSafeInteger(x) && x >= 0;
    return typeof h.fingerprint === "string" && typeof h.chunkHash === "string" && typeof h.promptFormatVersion === "string" &&
        count(h.nTokens) && Array.isArray(h.tokens) && h.tokens.every((t) => typeof t === "number" && Number.isInteger(t)) &&
        count(h.nStream) && count(h.nLayer) && typeof h.vTrans === "boolean" && Array.isArray(h.layers) && count(h.bodyBytes);
}
