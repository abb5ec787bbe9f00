/**
 * A chunk's KV in the KV codec's container (kv-codec.ts), as the chunk cache's disk tier stores it: the container's
 * key block holds the chunk's hash, the prompt-format version and its tokens (JSON), so a file answers for exactly one
 * cache key. Encoding, decoding with every mismatch as a cache miss reason, and the f16 size a file stands for.
 */
import {open} from "node:fs/promises";
import {isTransposed, type KvBody, kvBodySize} from "./kv-blob.js";
import {decodeKvBody, encodeKvBody, KvCodecError, peekKvContainer} from "./kv-codec.js";
import type {RopeParams} from "./rope-params.js";
import {loadNativeAddon} from "../native/native-addon.js";
import {type ChunkKey, type MissReason, WkvMiss} from "./wkv-file.js";

/** The first bytes of a codec container (a raw `.wkv` starts otherwise). */
export const chunkContainerMagic = Buffer.from("WEFTKVZ\0", "latin1");

/** A decoded container: the chunk's tokens and KV, its sizes and codec level. */
export type DecodedChunk = {tokens: Int32Array, body: KvBody, bytes: number, codecLevel: number, readBytes: number};

/** A container decoded off the JS thread; a refused or mismatched one throws a {@link WkvMiss} with its reason. */
export async function decodeChunkContainer(bytes: Uint8Array, key: ChunkKey, threads: number): Promise<DecodedChunk> {
    let decoded: Awaited<ReturnType<typeof decodeKvBody>>;
    try {
        decoded = await decodeKvBody(bytes, {fingerprint: key.fingerprint, threads});
    } catch (error) {
        throw missOf(error);
    }
    const tokens = keyBlockTokens(decoded.extra, key, decoded.body.cells.length);
    return {tokens, body: decoded.body, bytes: kvBodySize(decoded.body) + 4 * tokens.length, codecLevel: decoded.level, readBytes: bytes.byteLength};
}

/**
 * A container for a splice to decode straight into a sequence's cells (SpliceCodedPart): checked as a decode checks
 * it (header, shape, meta, key block) but not decoded; a damaged or mismatched one throws a {@link WkvMiss}. Such a
 * splice needs the cells at consecutive positions, V in rows and K coded un-rotated (the engine encodes chunks so);
 * null for a good container that lacks them, which is then decoded instead.
 */
export type CodedChunk = {bytes: Uint8Array, tokens: Int32Array, firstPos: number, codecLevel: number, f16Bytes: number};

export function peekChunkContainer(bytes: Uint8Array, key: ChunkKey): CodedChunk | null {
    let peeked: ReturnType<typeof peekKvContainer>;
    try {
        peeked = peekKvContainer(bytes, {fingerprint: key.fingerprint, threads: 1});
    } catch (error) {
        throw missOf(error);
    }
    const tokens = keyBlockTokens(peeked.extra, key, peeked.nTokens);
    if (peeked.firstPos == null || peeked.vTrans || !peeked.kUnrotated)
        return null;
    const f16Bytes = peeked.nTokens * peeked.layers.reduce((sum, layer) => sum + 2 * (layer.nEmbdK + layer.nEmbdV), 0);
    return {bytes, tokens, firstPos: peeked.firstPos, codecLevel: peeked.level, f16Bytes};
}

function missOf(error: unknown): unknown {
    return error instanceof KvCodecError ? new WkvMiss(codecMissReasons[error.reason], error.message) : error;
}

/** The chunk's tokens from a container's key block, which must name exactly `key`'s chunk and prompt format. */
function keyBlockTokens(block: Uint8Array, key: ChunkKey, cells: number): Int32Array {
    let extra: {chunkHash?: unknown, promptFormatVersion?: unknown, tokens?: unknown};
    try {
        extra = JSON.parse(Buffer.from(block).toString("utf8")) as typeof extra;
    } catch (error) {
        throw new WkvMiss("bad-header", `container key is not JSON: ${(error as Error).message}`);
    }
    if (extra.chunkHash !== key.chunkHash)
        throw new WkvMiss("wrong-chunk", `file holds chunk ${String(extra.chunkHash)}, expected ${key.chunkHash}`);
    if (extra.promptFormatVersion !== String(key.promptFormatVersion))
        throw new WkvMiss("wrong-prompt-format", `file has prompt format ${String(extra.promptFormatVersion)}, expected ${String(key.promptFormatVersion)}`);
    if (!Array.isArray(extra.tokens) || extra.tokens.length !== cells || !extra.tokens.every((t) => Number.isInteger(t)))
        throw new WkvMiss("bad-sizes", "container tokens do not match its KV cells");
    return Int32Array.from(extra.tokens as number[]);
}

/** The container for a chunk's disk copy, or null for a raw `.wkv` (codec off, addon missing, or the encoder refused). */
export async function encodeChunkContainer(key: ChunkKey, entry: {tokens: Int32Array, body: KvBody},
    codec: {level: number, threads: number} | null | undefined, rope: RopeParams | null): Promise<Uint8Array | null> {
    if (codec == null || !loadNativeAddon().available || !/^[0-9a-f]{32}$/.test(key.fingerprint))
        return null;
    const extra = Buffer.from(JSON.stringify({chunkHash: key.chunkHash, promptFormatVersion: String(key.promptFormatVersion), tokens: Array.from(entry.tokens)}));
    try {
        return await encodeKvBody(entry.body, {level: codec.level, fingerprint: key.fingerprint, extra, threads: codec.threads, rope});
    } catch {
        return null;
    }
}

/** Bytes of a body's K and V values (what the codec's header shape gives, f16). */
export function kvValueBytes(body: KvBody): number {
    return body.layers.reduce((sum, {k, v}) => sum + k.rows.byteLength + (isTransposed(v) ? v.data : v.rows).byteLength, 0);
}

/** The f16 size of the KV in a disk file: from a codec container's header (shape), else the file's own size. */
export async function containerF16Bytes(file: string, size: number): Promise<number> {
    try {
        const handle = await open(file, "r");
        try {
            const head = Buffer.alloc(56);
            if ((await handle.read(head, 0, 56, 0)).bytesRead < 56 || !startsWithContainerMagic(head))
                return size;
            const nTokens = head.readUInt32LE(32), nLayer = head.readUInt32LE(36);
            if (nLayer === 0 || nLayer > 4096)
                return size;
            const table = Buffer.alloc(32 * nLayer);
            if ((await handle.read(table, 0, table.byteLength, 56)).bytesRead < table.byteLength)
                return size;
            let widths = 0;
            for (let il = 0; il < nLayer; il++)
                widths += table.readUInt32LE(32 * il) + table.readUInt32LE(32 * il + 4);
            return nTokens * widths * 2;
        } finally {
            await handle.close();
        }
    } catch {
        return size;
    }
}

function startsWithContainerMagic(bytes: Uint8Array): boolean {
    return bytes.byteLength >= chunkContainerMagic.byteLength && chunkContainerMagic.equals(bytes.subarray(0, chunkContainerMagic.byteLength));
}

/** The codec's refusal reasons as the cache's miss reasons. */
const codecMissReasons: Record<KvCodecError["reason"], MissReason> = {
    "truncated": "truncated", "bad-magic": "bad-magic", "wrong-version": "wrong-version", "bad-header": "bad-header",
    "bad-sizes": "bad-sizes", "wrong-model": "wrong-model", "wrong-shape": "bad-sizes", "checksum": "checksum", "corrupt": "bad-body",
    "bad-meta": "bad-header", "unsupported": "bad-body"
};
