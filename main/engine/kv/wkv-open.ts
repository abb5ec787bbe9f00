// Opening a `.wkv` file safely, before decodeWkv sees its bytes: only a regular file (never a FIFO, a device or a
// symbolic link), the header read first and the file's size checked against the shape it promises, then the cells'
// positions and the layout checked. A question must never hang on, or read without bound from, a cache file.
import {constants} from "node:fs";
import {randomBytes} from "node:crypto";
import {lstat, mkdir, open, readFile, rename, writeFile} from "node:fs/promises";
import path from "node:path";
import {isTransposed, type KvBody} from "./kv-blob.js";
import {type ChunkKey, decodeWkv, type WkvHeader, WkvMiss} from "./wkv-file.js";

const prefixBytes = 16;
const digestBytes = 32;
const maxHeaderBytes = 64 * 1024 * 1024;

/** Reads and decodes a `.wkv` file; throws {@link WkvMiss} (reason "absent" when there is no file). */
export async function readWkvFile(file: string, key: ChunkKey, expectedLayout?: string): Promise<{header: WkvHeader, body: KvBody, tokens: Int32Array}> {
    const read = await readCacheFile(file, key, expectedLayout);
    if (read.kind !== "wkv")
        throw new WkvMiss("bad-magic", "not a .wkv file");
    return read;
}

/** A cache file of another format (the KV codec's container), recognised by its magic: read whole within `maxBytes`. */
export type OtherFormat = {magic: Uint8Array, maxBytes: number};

/**
 * The same safe open for either disk format: a `.wkv` file decoded, or the bytes of a file that starts with
 * `other.magic` (whose own decoder checks its shape), read only when it is no larger than `other.maxBytes`.
 */
export async function readCacheFile(file: string, key: ChunkKey, expectedLayout?: string, other?: OtherFormat):
    Promise<({kind: "wkv"} & {header: WkvHeader, body: KvBody, tokens: Int32Array}) | {kind: "other", bytes: Uint8Array}> {
    const link = await lstat(file).catch((error: NodeJS.ErrnoException) => {
        if (error.code === "ENOENT")
            throw new WkvMiss("absent", "not cached");
        throw error;
    });
    if (link.isSymbolicLink())
        throw new WkvMiss("not-a-file", "the cache entry is a symbolic link");
    if (!link.isFile())
        throw new WkvMiss("not-a-file", "the cache entry is not a regular file (a FIFO, device or folder)");

    // O_NOFOLLOW and O_NONBLOCK: a file swapped for a link or a FIFO after the lstat still cannot redirect or block the read.
    const handle = await open(file, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK).catch((error: NodeJS.ErrnoException) => {
        if (error.code === "ENOENT")
            throw new WkvMiss("absent", "not cached");
        if (error.code === "ELOOP")
            throw new WkvMiss("not-a-file", "the cache entry is a symbolic link");
        throw error;
    });
    try {
        const info = await handle.stat();
        if (!info.isFile() || info.ino !== link.ino)
            throw new WkvMiss("not-a-file", "the cache entry changed into something other than a regular file");

        const size = info.size;
        if (other != null && size >= other.magic.byteLength &&
            Buffer.from(await readExactly(handle, 0, other.magic.byteLength)).equals(Buffer.from(other.magic))) {
            if (size > other.maxBytes)
                throw new WkvMiss("bad-sizes", `file has ${size} bytes, more than ${other.maxBytes} a cache entry may have`);
            return {kind: "other", bytes: await readExactly(handle, 0, size)};
        }
        if (size < prefixBytes + digestBytes)
            return {kind: "wkv", ...decodeWkv(await readExactly(handle, 0, size), key)};

        const prefix = await readExactly(handle, 0, prefixBytes);
        const headerLength = Buffer.from(prefix).readUInt32LE(12);
        if (headerLength > maxHeaderBytes || prefixBytes + headerLength + digestBytes > size)
            return {kind: "wkv", ...decodeWkv(prefix, key)};

        let header: WkvHeader;
        try {
            header = JSON.parse(Buffer.from(await readExactly(handle, prefixBytes, headerLength)).toString("utf8")) as WkvHeader;
        } catch (error) {
            throw new WkvMiss("bad-header", `header is not JSON: ${(error as Error).message}`);
        }
        const bodyBytes = expectedBodyBytes(header);
        if (bodyBytes == null || !Number.isSafeInteger(header.bodyBytes))
            throw new WkvMiss("bad-header", "header lacks a valid shape");
        if (size < prefixBytes + headerLength + header.bodyBytes + digestBytes)
            throw new WkvMiss("truncated", `file has ${size} bytes, its header promises ${prefixBytes + headerLength + header.bodyBytes + digestBytes}`);
        if (header.bodyBytes !== bodyBytes)
            throw new WkvMiss("bad-sizes", `header promises a ${header.bodyBytes}-byte body, its shape needs ${bodyBytes}`);
        const expected = prefixBytes + headerLength + bodyBytes + digestBytes;
        if (size !== expected)
            throw new WkvMiss("bad-sizes", `file has ${size} bytes, its header's shape needs ${expected}`);
        // Another model's file keeps its own name (decodeWkv reports wrong-model); a re-keyed one is caught by its layout.
        if (expectedLayout != null && header.fingerprint === key.fingerprint && layoutOf(header) !== expectedLayout)
            throw new WkvMiss("wrong-layout", "the KV layout (layers, types, row sizes) is not this model's");

        const decoded = decodeWkv(await readExactly(handle, 0, size), key);
        checkPositions(decoded.body);
        return {kind: "wkv", ...decoded};
    } finally {
        await handle.close();
    }
}

/**
 * A chunk's KV is computed alone after a BOS: its cells sit at consecutive positions from 1 (0 where the BOS's cell was
 * kept), in order, each in one sequence; the splice re-positions keys by these numbers, so they must be exactly that.
 */
function checkPositions(body: KvBody): void {
    const first = body.cells[0]?.pos;
    if (first != null && first !== 0 && first !== 1)
        throw new WkvMiss("bad-positions", `the first cell is at position ${first}, expected 1`);
    body.cells.forEach((cell, index) => {
        if (cell.pos !== first! + index)
            throw new WkvMiss("bad-positions", `cell ${index} is at position ${cell.pos}, expected ${first! + index}`);
        if (cell.seqIds.length !== 1)
            throw new WkvMiss("bad-positions", `cell ${index} belongs to ${cell.seqIds.length} sequences`);
    });
}

/** The layers' shapes and orientation: what must match the model a KV is spliced into. */
export function layoutOf(header: Pick<WkvHeader, "layers" | "vTrans" | "nLayer">): string {
    return JSON.stringify({nLayer: header.nLayer, vTrans: header.vTrans, layers: header.layers});
}

/** The body size a header's shape implies (one sequence id per cell), or null when the shape is not one. */
function expectedBodyBytes(header: WkvHeader): number | null {
    const count = (value: unknown) => typeof value === "number" && Number.isSafeInteger(value) && value >= 0;
    if (header == null || typeof header !== "object" || !count(header.nTokens) || !count(header.nStream) || !Array.isArray(header.layers) ||
        header.layers.length !== header.nLayer)
        return null;
    const n = header.nTokens;
    let size = 4 + 4 * header.nStream;
    if (n === 0)
        return size;
    size += n * 12 + 8;
    for (const layer of header.layers) {
        const {k, v} = layer ?? {};
        if (!Array.isArray(k) || !Array.isArray(v) || ![k[1], ...v.slice(1)].every(count))
            return null;
        size += 12 + n * k[1]! + 12 + n * (v.length === 3 ? v[1]! * v[2]! : v[1]!);
    }
    return Number.isSafeInteger(size) ? size : null;
}

async function readExactly(handle: Awaited<ReturnType<typeof open>>, position: number, length: number): Promise<Uint8Array> {
    const buffer = new Uint8Array(length);
    let filled = 0;
    while (filled < length) {
        const {bytesRead} = await handle.read(buffer, filled, length - filled, position + filled);
        if (bytesRead === 0)
            break;
        filled += bytesRead;
    }
    return buffer.subarray(0, filled);
}

/**
 * The layout each model's cache folder holds, recorded by the first entry stored there (`layout.json`): a file whose
 * header was re-keyed to this model but whose KV has another shape is a miss, never a failed splice.
 */
export class LayoutAnchors {
    private readonly known = new Map<string, string | null>();

    public constructor(private readonly root: string) {}

    public async expected(fingerprint: string): Promise<string | undefined> {
        if (!this.known.has(fingerprint))
            this.known.set(fingerprint, await readFile(path.join(this.root, fingerprint, "layout.json"), "utf8").catch(() => null));
        return this.known.get(fingerprint) ?? undefined;
    }

    public async record(fingerprint: string, body: KvBody): Promise<void> {
        if (await this.expected(fingerprint) != null)
            return;
        const layout = layoutOf({
            nLayer: body.layers.length, vTrans: body.vTrans,
            layers: body.layers.map(({k, v}) => ({k: [k.type, k.rowSize], v: isTransposed(v) ? [v.type, v.elemSize, v.nEmbd] : [v.type, v.rowSize]}))
        });
        const file = path.join(this.root, fingerprint, "layout.json");
        const temp = `${file}.${process.pid}.${randomBytes(4).toString("hex")}.tmp`;
        await mkdir(path.dirname(file), {recursive: true});
        await writeFile(temp, layout);
        await rename(temp, file);
        this.known.set(fingerprint, layout);
    }
}
