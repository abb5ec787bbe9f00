/**
 * llama.cpp sequence-state blobs (node-llama-cpp 3.22.1, bundled llama.cpp tag v0.5.0), parsed into cells and
 * per-layer K/V bytes and written back byte for byte. Layout (src/llama-context.cpp state_seq_*,
 * src/llama-kv-cache.cpp state_write / state_write_meta / state_write_data):
 *
 *   in memory (llama_state_seq_get_data): u32 0xaf143cd8, i32 seq_id, body
 *   file (llama_state_seq_save_file):     u32 0x67677371 ("ggsq"), u32 version 3, u32 n_tok, i32 tokens[n_tok], body
 *   body: u32 n_stream; per stream: u32 cell_count, and only when cell_count > 0:
 *         per cell  i32 pos, u32 n_seq_id, [12-byte cell ext for M-RoPE / PLE models], i32 seq_id[n_seq_id]
 *         u32 v_trans, u32 n_layer
 *         per layer K: i32 ggml_type, u64 row_size, cell_count rows (keys stored after RoPE)
 *         per layer V, v_trans = 0: like K
 *         per layer V, v_trans = 1: i32 ggml_type, u32 elem_size, u32 n_embd_v_gqa, then for each of the
 *                                   n_embd_v_gqa dimensions cell_count elements
 *
 * A context made by node-llama-cpp (kv_unified = false) has one stream per sequence, and a sequence's blob lists
 * every stream with only its own one non-empty; the loader requires n_stream to equal the target context's stream
 * count and loads the non-empty stream into the target sequence whatever its index. Weft keeps caches in f16/f32
 * with one non-empty stream; anything else is rejected with a {@link KvBlobError}.
 */

export const seqStateMemoryMagic = 0xaf143cd8;
export const seqStateFileMagic = 0x67677371;
export const seqStateFileVersion = 3;

export const ggmlTypeF32 = 0;
export const ggmlTypeF16 = 1;

/** llama.cpp's LLAMA_MAX_SEQ: a cell cannot belong to more sequences than this. */
const maxSeq = 256;

export class KvBlobError extends Error {
    override name = "KvBlobError";
}

export type KvCell = {pos: number, seqIds: number[]};

/** One tensor stored a row per cell: `rows` holds `cellCount * rowSize` bytes, cells in blob order. */
export type KvRows = {type: number, rowSize: number, rows: Uint8Array};

/**
 * V stored transposed (v_trans = 1, flash attention off): `data` holds `nEmbd` runs (one per dimension) of
 * `cellCount` elements of `elemSize` bytes each.
 */
export type KvTransposed = {type: number, elemSize: number, nEmbd: number, data: Uint8Array};

export type KvLayer = {k: KvRows, v: KvRows | KvTransposed};

/**
 * The KV of one sequence. `layers[i].v` is {@link KvRows} when `vTrans` is false and {@link KvTransposed} when
 * it is true. An empty sequence has no cells and no layers (llama.cpp writes nothing past the cell count) and
 * `vTrans` false.
 */
export type KvBody = {
    /** Stream count of the context it came from; written back so the same context can load it. */
    nStream: number;
    /** Index of the stream holding the cells (0 for an empty body). */
    stream: number;
    cells: KvCell[];
    vTrans: boolean;
    layers: KvLayer[];
};

export type SeqStateFile = {form: "file", tokens: Int32Array, body: KvBody};
export type SeqStateMemory = {form: "memory", seqId: number, body: KvBody};
export type SeqState = SeqStateFile | SeqStateMemory;

export function isTransposed(v: KvRows | KvTransposed): v is KvTransposed {
    return "elemSize" in v;
}

export function ggmlTypeSize(type: number): number {
    if (type === ggmlTypeF32)
        return 4;
    if (type === ggmlTypeF16)
        return 2;
    throw new KvBlobError(`unsupported KV tensor type ${ggmlTypeName(type)}: Weft's KV cache handles only f16 and f32 (a quantized KV cache stores blocks, not elements)`);
}

export function ggmlTypeName(type: number): string {
    const names: Record<number, string> = {0: "f32", 1: "f16", 2: "q4_0", 3: "q4_1", 6: "q5_0", 7: "q5_1", 8: "q8_0", 30: "bf16"};
    return names[type] ?? `ggml type ${type}`;
}

// ---------------------------------------------------------------------------------------------------------------
// Parsing

class Reader {
    private readonly view: DataView;
    offset: number;

    readonly bytes: Uint8Array;

    constructor(bytes: Uint8Array, offset = 0) {
        // A plain view: subarrays of a Node Buffer are Buffers, whose slice() does not copy.
        this.bytes = new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength);
        this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
        this.offset = offset;
    }

    private need(n: number, what: string): void {
        if (this.offset + n > this.bytes.byteLength)
            throw new KvBlobError(`sequence state is truncated: ${what} needs ${n} bytes at offset ${this.offset} but the blob has ${this.bytes.byteLength}`);
    }

    u32(what: string): number {
        this.need(4, what);
        const value = this.view.getUint32(this.offset, true);
        this.offset += 4;
        return value;
    }

    i32(what: string): number {
        this.need(4, what);
        const value = this.view.getInt32(this.offset, true);
        this.offset += 4;
        return value;
    }

    u64(what: string): number {
        this.need(8, what);
        const value = this.view.getBigUint64(this.offset, true);
        this.offset += 8;
        if (value > BigInt(Number.MAX_SAFE_INTEGER))
            throw new KvBlobError(`${what} ${value} is out of range`);
        return Number(value);
    }

    take(n: number, what: string): Uint8Array {
        this.need(n, what);
        const out = this.bytes.subarray(this.offset, this.offset + n);
        this.offset += n;
        return out;
    }

    get remaining(): number {
        return this.bytes.byteLength - this.offset;
    }
}

const cellExtHint = "(M-RoPE and PLE models add a 12-byte extension to each cell, which Weft does not support)";

function readBody(reader: Reader): KvBody {
    const nStream = reader.u32("n_stream");
    if (nStream < 1 || nStream > maxSeq)
        throw new KvBlobError(`invalid n_stream ${nStream}`);

    let found: Omit<KvBody, "nStream"> | null = null;
    for (let s = 0; s < nStream; s++) {
        const cellCount = reader.u32(`cell_count of stream ${s}`);
        if (cellCount === 0)
            continue;
        if (found != null)
            throw new KvBlobError(`sequence state has cells in streams ${found.stream} and ${s}: only one sequence per blob is supported (a whole-context dump is not a sequence state)`);

        found = {stream: s, ...readStream(reader, cellCount)};
    }

    if (reader.remaining !== 0)
        throw new KvBlobError(`sequence state has ${reader.remaining} bytes after the KV cache: the context holds more than one memory module (an SWA, hybrid or recurrent model), which Weft does not support`);

    return found == null
        ? {nStream, stream: 0, cells: [], vTrans: false, layers: []}
        : {nStream, ...found};
}

function readStream(reader: Reader, cellCount: number): Omit<KvBody, "nStream" | "stream"> {
    if (cellCount * 8 > reader.remaining)
        throw new KvBlobError(`sequence state is truncated: ${cellCount} cells cannot fit in ${reader.remaining} bytes`);

    const cells: KvCell[] = new Array(cellCount);
    for (let i = 0; i < cellCount; i++) {
        const pos = reader.i32("cell pos");
        const nSeqId = reader.u32("cell n_seq_id");
        if (nSeqId < 1 || nSeqId > maxSeq)
            throw new KvBlobError(`cell ${i} has n_seq_id ${nSeqId} ${cellExtHint}`);
        const seqIds: number[] = [];
        for (let j = 0; j < nSeqId; j++) {
            const seqId = reader.i32("cell seq_id");
            if (seqId < 0 || seqId >= maxSeq)
                throw new KvBlobError(`cell ${i} has seq_id ${seqId} ${cellExtHint}`);
            seqIds.push(seqId);
        }
        cells[i] = {pos, seqIds};
    }

    const vTransRaw = reader.u32("v_trans");
    if (vTransRaw > 1)
        throw new KvBlobError(`invalid v_trans ${vTransRaw} ${cellExtHint}`);
    const vTrans = vTransRaw === 1;
    const nLayer = reader.u32("n_layer");
    if (nLayer < 1 || nLayer > 4096)
        throw new KvBlobError(`invalid n_layer ${nLayer}`);

    const keys: KvRows[] = [];
    for (let il = 0; il < nLayer; il++)
        keys.push(readRows(reader, cellCount, `layer ${il} K`));

    const values: (KvRows | KvTransposed)[] = [];
    for (let il = 0; il < nLayer; il++) {
        if (reader.remaining === 0)
            throw new KvBlobError(`sequence state has ${values.length} V tensors for ${nLayer} layers: models whose layers lack a V cache (MLA) are not supported`);
        values.push(vTrans ? readTransposed(reader, cellCount, `layer ${il} V`) : readRows(reader, cellCount, `layer ${il} V`));
    }

    return {cells, vTrans, layers: keys.map((k, il) => ({k, v: values[il]!}))};
}

function readRows(reader: Reader, cellCount: number, what: string): KvRows {
    const type = reader.i32(`${what} type`);
    const rowSize = reader.u64(`${what} row size`);
    const typeSize = ggmlTypeSize(type);
    if (rowSize === 0 || rowSize % typeSize !== 0)
        throw new KvBlobError(`${what} row size ${rowSize} is not a whole number of ${ggmlTypeName(type)} elements`);
    return {type, rowSize, rows: reader.take(rowSize * cellCount, `${what} rows`)};
}

function readTransposed(reader: Reader, cellCount: number, what: string): KvTransposed {
    const type = reader.i32(`${what} type`);
    const elemSize = reader.u32(`${what} element size`);
    const nEmbd = reader.u32(`${what} n_embd_v_gqa`);
    if (elemSize !== ggmlTypeSize(type))
        throw new KvBlobError(`${what} element size ${elemSize} does not match its type ${ggmlTypeName(type)}`);
    if (nEmbd === 0)
        throw new KvBlobError(`${what} has n_embd_v_gqa 0`);
    return {type, elemSize, nEmbd, data: reader.take(nEmbd * cellCount * elemSize, `${what} data`)};
}

/** Parses a bare body (what follows the file or in-memory header). The blob must end with the body. */
export function parseKvBody(bytes: Uint8Array): KvBody {
    return readBody(new Reader(bytes));
}

/** Parses the file form (`llama_state_seq_save_file`, node-llama-cpp's `sequence.saveStateToFile`). */
export function parseSeqStateFile(bytes: Uint8Array): SeqStateFile {
    const reader = new Reader(bytes);
    const magic = reader.u32("magic");
    if (magic !== seqStateFileMagic)
        throw new KvBlobError(`not a sequence state file: magic 0x${magic.toString(16).padStart(8, "0")}, expected 0x${seqStateFileMagic.toString(16)}`);
    const version = reader.u32("version");
    if (version !== seqStateFileVersion)
        throw new KvBlobError(`unsupported sequence state file version ${version} (expected ${seqStateFileVersion})`);
    const nTok = reader.u32("n_tok");
    if (nTok * 4 > reader.remaining)
        throw new KvBlobError(`sequence state is truncated: ${nTok} tokens cannot fit in ${reader.remaining} bytes`);
    const tokenBytes = reader.take(nTok * 4, "tokens");
    const tokens = new Int32Array(nTok);
    const view = new DataView(tokenBytes.buffer, tokenBytes.byteOffset, tokenBytes.byteLength);
    for (let i = 0; i < nTok; i++)
        tokens[i] = view.getInt32(i * 4, true);
    return {form: "file", tokens, body: readBody(reader)};
}

/** Parses the in-memory form (`llama_state_seq_get_data`). */
export function parseSeqStateMemory(bytes: Uint8Array): SeqStateMemory {
    const reader = new Reader(bytes);
    const magic = reader.u32("magic");
    if (magic !== seqStateMemoryMagic)
        throw new KvBlobError(`not an in-memory sequence state: magic 0x${magic.toString(16).padStart(8, "0")}, expected 0x${seqStateMemoryMagic.toString(16)}`);
    const seqId = reader.i32("seq_id");
    return {form: "memory", seqId, body: readBody(reader)};
}

/** Parses either form, told apart by the magic. */
export function parseSeqState(bytes: Uint8Array): SeqState {
    if (bytes.byteLength >= 4) {
        const magic = new DataView(bytes.buffer, bytes.byteOffset, 4).getUint32(0, true);
        if (magic === seqStateFileMagic)
            return parseSeqStateFile(bytes);
        if (magic === seqStateMemoryMagic)
            return parseSeqStateMemory(bytes);
    }
    throw new KvBlobError("not a llama.cpp sequence state (unknown magic)");
}

// ---------------------------------------------------------------------------------------------------------------
// Serialization

/** Bytes {@link writeKvBody} writes for `body`. */
export function kvBodySize(body: KvBody): number {
    let size = 4 + 4 * body.nStream;
    if (body.cells.length === 0)
        return size;
    for (const cell of body.cells)
        size += 8 + 4 * cell.seqIds.length;
    size += 8;
    for (const layer of body.layers) {
        size += 12 + layer.k.rows.byteLength;
        size += isTransposed(layer.v) ? 12 + layer.v.data.byteLength : 12 + layer.v.rows.byteLength;
    }
    return size;
}

/** Checks the body is self-consistent (sizes match the cell count, V form matches vTrans). */
export function validateKvBody(body: KvBody): void {
    const n = body.cells.length;
    if (!Number.isInteger(body.nStream) || body.nStream < 1 || body.nStream > maxSeq)
        throw new KvBlobError(`invalid n_stream ${body.nStream}`);
    if (!Number.isInteger(body.stream) || body.stream < 0 || body.stream >= body.nStream)
        throw new KvBlobError(`stream ${body.stream} is outside n_stream ${body.nStream}`);
    if (n === 0) {
        if (body.layers.length !== 0)
            throw new KvBlobError("an empty body has no layers");
        return;
    }
    if (body.layers.length === 0)
        throw new KvBlobError("a body with cells needs at least one layer");
    for (const cell of body.cells) {
        if (cell.seqIds.length === 0)
            throw new KvBlobError("every cell needs at least one sequence id");
    }
    body.layers.forEach((layer, il) => {
        if (layer.k.rows.byteLength !== n * layer.k.rowSize)
            throw new KvBlobError(`layer ${il} K holds ${layer.k.rows.byteLength} bytes, expected ${n} cells x ${layer.k.rowSize}`);
        if (isTransposed(layer.v) !== body.vTrans)
            throw new KvBlobError(`layer ${il} V is ${isTransposed(layer.v) ? "" : "not "}transposed but vTrans is ${body.vTrans}`);
        if (isTransposed(layer.v)) {
            if (layer.v.data.byteLength !== n * layer.v.nEmbd * layer.v.elemSize)
                throw new KvBlobError(`layer ${il} V holds ${layer.v.data.byteLength} bytes, expected ${n} cells x ${layer.v.nEmbd} x ${layer.v.elemSize}`);
        } else if (layer.v.rows.byteLength !== n * layer.v.rowSize) {
            throw new KvBlobError(`layer ${il} V holds ${layer.v.rows.byteLength} bytes, expected ${n} cells x ${layer.v.rowSize}`);
        }
    });
}

class Writer {
    private readonly view: DataView;

    constructor(readonly bytes: Uint8Array, public offset: number) {
        this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    }

    u32(value: number): void {
        this.view.setUint32(this.offset, value, true);
        this.offset += 4;
    }

    i32(value: number): void {
        this.view.setInt32(this.offset, value, true);
        this.offset += 4;
    }

    u64(value: number): void {
        this.view.setBigUint64(this.offset, BigInt(value), true);
        this.offset += 8;
    }

    put(data: Uint8Array): void {
        this.bytes.set(data, this.offset);
        this.offset += data.byteLength;
    }
}

/** Writes `body` into `target` at `offset`; returns the offset after it. */
export function writeKvBody(body: KvBody, target: Uint8Array, offset = 0): number {
    validateKvBody(body);
    const w = new Writer(target, offset);
    w.u32(body.nStream);
    for (let s = 0; s < body.nStream; s++) {
        if (s !== body.stream || body.cells.length === 0) {
            w.u32(0);
            continue;
        }
        w.u32(body.cells.length);
        for (const cell of body.cells) {
            w.i32(cell.pos);
            w.u32(cell.seqIds.length);
            for (const seqId of cell.seqIds)
                w.i32(seqId);
        }
        w.u32(body.vTrans ? 1 : 0);
        w.u32(body.layers.length);
        for (const {k} of body.layers) {
            w.i32(k.type);
            w.u64(k.rowSize);
            w.put(k.rows);
        }
        for (const {v} of body.layers) {
            if (isTransposed(v)) {
                w.i32(v.type);
                w.u32(v.elemSize);
                w.u32(v.nEmbd);
                w.put(v.data);
            } else {
                w.i32(v.type);
                w.u64(v.rowSize);
                w.put(v.rows);
            }
        }
    }
    return w.offset;
}

export function serializeKvBody(body: KvBody): Uint8Array {
    const out = new Uint8Array(kvBodySize(body));
    writeKvBody(body, out, 0);
    return out;
}

/** The file form, loadable by `sequence.loadStateFromFile(path, {acceptRisk: true})`. */
export function serializeSeqStateFile(tokens: ArrayLike<number>, body: KvBody): Uint8Array {
    const out = new Uint8Array(12 + 4 * tokens.length + kvBodySize(body));
    const w = new Writer(out, 0);
    w.u32(seqStateFileMagic);
    w.u32(seqStateFileVersion);
    w.u32(tokens.length);
    for (let i = 0; i < tokens.length; i++)
        w.i32(tokens[i]!);
    writeKvBody(body, out, w.offset);
    return out;
}

/** The in-memory form, loadable by `llama_state_seq_set_data` (which ignores the seq_id in the header). */
export function serializeSeqStateMemory(seqId: number, body: KvBody): Uint8Array {
    const out = new Uint8Array(8 + kvBodySize(body));
    const w = new Writer(out, 0);
    w.u32(seqStateMemoryMagic);
    w.i32(seqId);
    writeKvBody(body, out, w.offset);
    return out;
}

export function serializeSeqState(state: SeqState): Uint8Array {
    return state.form === "file" ? serializeSeqStateFile(state.tokens, state.body) : serializeSeqStateMemory(state.seqId, state.body);
}

// ---------------------------------------------------------------------------------------------------------------
// Building blended sequences

/**
 * Cells [from, to) of `body` in blob order, copying only the transposed V (whose cells are not contiguous);
 * K rows and untransposed V rows are subarrays of the source.
 */
export function sliceCells(body: KvBody, from: number, to: number): KvBody {
    const n = body.cells.length;
    if (!(Number.isInteger(from) && Number.isInteger(to) && 0 <= from && from <= to && to <= n))
        throw new KvBlobError(`cannot slice cells [${from}, ${to}) of ${n}`);
    const count = to - from;
    if (count === 0)
        return {nStream: body.nStream, stream: 0, cells: [], vTrans: false, layers: []};
    const rows = (t: KvRows): KvRows => ({...t, rows: t.rows.subarray(from * t.rowSize, to * t.rowSize)});
    return {
        ...body,
        cells: body.cells.slice(from, to).map((cell) => ({pos: cell.pos, seqIds: [...cell.seqIds]})),
        layers: body.layers.map(({k, v}) => {
            if (!isTransposed(v))
                return {k: rows(k), v: rows(v)};
            const data = new Uint8Array(v.nEmbd * count * v.elemSize);
            const runIn = n * v.elemSize, runOut = count * v.elemSize, start = from * v.elemSize;
            for (let j = 0; j < v.nEmbd; j++)
                data.set(v.data.subarray(j * runIn + start, j * runIn + start + runOut), j * runOut);
            return {k: rows(k), v: {...v, data}};
        })
    };
}

/** The per-layer tensor shapes two bodies must share to be concatenated. */
export function layerShape(body: KvBody): string {
    return JSON.stringify({
        vTrans: body.vTrans,
        layers: body.layers.map(({k, v}) => [k.type, k.rowSize, ...(isTransposed(v) ? [v.type, v.elemSize, v.nEmbd] : [v.type, v.rowSize])])
    });
}

/**
 * Per f32 biased exponent in [102, 142] (values that round to a finite, non-zero f16 or to zero by a tie): the
 * f16 exponent bits (`base`) and how far the mantissa shifts right (`shift`). Below the f16 normal range the
 * implicit bit is kept and shifted further (subnormals).
 */
const floatToHalfBase = new Uint16Array(256);
const floatToHalfShift = new Uint8Array(256);
for (let exponent = 102; exponent <= 142; exponent++) {
    const e = exponent - 127;
    floatToHalfBase[exponent] = e < -14 ? 0 : (e + 15) << 10;
    floatToHalfShift[exponent] = e < -14 ? -e - 1 : 13;
}

const scratchF32 = new Float32Array(1);
const scratchU32 = new Uint32Array(scratchF32.buffer);

// ---------------------------------------------------------------------------------------------------------------
// f16 <-> f32

const halfToFloatTable = (() => {
    const table = new Float32Array(65536);
    for (let h = 0; h < 65536; h++) {
        const sign = h & 0x8000 ? -1 : 1;
        const exponent = (h >> 10) & 0x1f;
        const mantissa = h & 0x3ff;
        if (exponent === 0)
            table[h] = sign * mantissa * 2 ** -24;
        else if (exponent === 31)
            table[h] = mantissa === 0 ? sign * Infinity : NaN;
        else
            table[h] = sign * (1 + mantissa / 1024) * 2 ** (exponent - 15);
    }
    return table;
})();


export function halfToFloat(h: number): number {
    return halfToFloatTable[h & 0xffff]!;
}

/** Bits of the f32 `bits` rounded to the nearest f16, ties to even (as F16C and ggml's fallback do). */
function f32BitsToHalf(bits: number): number {
    const sign = (bits >>> 16) & 0x8000;
    const exponent = (bits >>> 23) & 0xff;
    const fraction = bits & 0x7fffff;
    if (exponent === 0xff)
        return sign | (fraction !== 0 ? 0x7e00 : 0x7c00);
    if (exponent > 142) // |x| >= 65536 rounds to infinity
        return sign | 0x7c00;
    if (exponent < 102) // |x| < 2^-25 rounds to zero
        return sign;
    const shift = floatToHalfShift[exponent]!;
    const mantissa = shift > 13 ? fraction | 0x800000 : fraction;
    let h = floatToHalfBase[exponent]! + (mantissa >>> shift);
    const roundBit = 1 << (shift - 1);
    const rest = mantissa & ((roundBit << 1) - 1);
    // Round half to even; a carry out of the mantissa bumps the exponent (up to infinity), which is right.
    if (rest > roundBit || (rest === roundBit && (h & 1) !== 0))
        h++;
    return sign | h;
}

export function floatToHalf(value: number): number {
    scratchF32[0] = value;
    return f32BitsToHalf(scratchU32[0]!);
}

/** Decodes f16 bits to f32; `out` may be passed to avoid an allocation. */
export function f16ToF32(src: Uint16Array, out: Float32Array = new Float32Array(src.length)): Float32Array {
    const table = halfToFloatTable;
    for (let i = 0; i < src.length; i++)
        out[i] = table[src[i]!]!;
    return out;
}

/** Encodes f32 to f16 bits, round half to even; `out` may be passed to avoid an allocation. */
export function f32ToF16(src: Float32Array, out: Uint16Array = new Uint16Array(src.length)): Uint16Array {
    const bits = new Uint32Array(src.buffer, src.byteOffset, src.length);
    for (let i = 0; i < src.length; i++)
        out[i] = f32BitsToHalf(bits[i]!);
    return out;
}
