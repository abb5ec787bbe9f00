// The TypeScript reference the native splice (native/src/kv_splice.cpp) is checked against: re-positioning cached K
// rows as llama.cpp's K-shift does (ropeShiftRows / ropeShiftBody) and concatenating sequence-state bodies
// (concatBlobs). The engine no longer uses them (the addon does this work in one native pass); the tests compare the
// two paths element by element.
import {
    f16ToF32, f32ToF16, ggmlTypeF16, ggmlTypeF32, ggmlTypeName, isTransposed, type KvBody, KvBlobError, type KvCell, type KvLayer,
    type KvRows, type KvTransposed, layerShape, validateKvBody
} from "../../main/engine/kv/kv-blob.js";
import {type RopeParams, type RopeType, RopeUnsupportedError} from "../../main/engine/kv/rope-params.js";

/** llama.cpp's LLAMA_MAX_SEQ. */
const maxSeq = 256;

/** Returns a copy of `body` with its cells at new positions (K rows are not touched: see main/engine/kv/rope-params.ts). */
export function withPositions(body: KvBody, positions: ArrayLike<number> | ((pos: number, index: number) => number)): KvBody {
    const at = typeof positions === "function" ? positions : (_pos: number, index: number) => positions[index]!;
    if (typeof positions !== "function" && positions.length !== body.cells.length)
        throw new KvBlobError(`${positions.length} positions for ${body.cells.length} cells`);
    return {...body, cells: body.cells.map((cell, index) => ({pos: at(cell.pos, index), seqIds: cell.seqIds}))};
}


/**
 * One body whose cells are the parts' cells in order, at the positions each part carries, all owned by `seqId`,
 * with every layer's K and V rows concatenated in the same cell order (a transposed V is re-interleaved: for each
 * dimension, the parts' runs one after another). llama.cpp's loader wipes the destination sequence first, so a
 * blended sequence is built by concatenating and loading once. The result holds `nStream` streams (default: the
 * first part's) with the cells in stream 0; the loader puts them in the target sequence's own stream.
 */
export function concatBlobs(parts: readonly KvBody[], seqId: number, options: {nStream?: number} = {}): KvBody {
    if (!Number.isInteger(seqId) || seqId < 0 || seqId >= maxSeq)
        throw new KvBlobError(`invalid seq_id ${seqId}`);
    const nonEmpty = parts.filter((part) => part.cells.length > 0);
    const nStream = options.nStream ?? parts[0]?.nStream ?? 1;
    if (nonEmpty.length === 0)
        return {nStream, stream: 0, cells: [], vTrans: false, layers: []};

    const first = nonEmpty[0]!;
    const shape = layerShape(first);
    for (const part of nonEmpty) {
        validateKvBody(part);
        if (layerShape(part) !== shape)
            throw new KvBlobError("cannot concatenate KV caches of different layouts (layer count, types, row sizes or V transposition differ): they come from different models or context settings");
    }

    const total = nonEmpty.reduce((sum, part) => sum + part.cells.length, 0);
    const cells: KvCell[] = [];
    for (const part of nonEmpty) {
        for (const cell of part.cells)
            cells.push({pos: cell.pos, seqIds: [seqId]});
    }

    // One allocation for all layers keeps the result compact; each tensor is a subarray of it.
    let bytes = 0;
    for (const {k, v} of first.layers)
        bytes += total * k.rowSize + (isTransposed(v) ? total * v.nEmbd * v.elemSize : total * v.rowSize);
    const arena = new Uint8Array(bytes);
    let at = 0;
    const alloc = (n: number): Uint8Array => {
        const out = arena.subarray(at, at + n);
        at += n;
        return out;
    };
    const concatRows = (pick: (part: KvBody) => KvRows, template: KvRows): KvRows => {
        const rows = alloc(total * template.rowSize);
        let offset = 0;
        for (const part of nonEmpty) {
            const src = pick(part).rows;
            rows.set(src, offset);
            offset += src.byteLength;
        }
        return {type: template.type, rowSize: template.rowSize, rows};
    };

    const layers: KvLayer[] = first.layers.map(({k, v}, il) => {
        const kOut = concatRows((part) => part.layers[il]!.k, k);
        if (!isTransposed(v))
            return {k: kOut, v: concatRows((part) => part.layers[il]!.v as KvRows, v)};
        const data = alloc(total * v.nEmbd * v.elemSize);
        const runOut = total * v.elemSize;
        let cellOffset = 0;
        for (const part of nonEmpty) {
            const src = (part.layers[il]!.v as KvTransposed).data;
            const runIn = part.cells.length * v.elemSize;
            for (let j = 0; j < v.nEmbd; j++)
                data.set(src.subarray(j * runIn, (j + 1) * runIn), j * runOut + cellOffset * v.elemSize);
            cellOffset += part.cells.length;
        }
        return {k: kOut, v: {type: v.type, elemSize: v.elemSize, nEmbd: v.nEmbd, data}};
    });

    return {nStream, stream: 0, cells, vTrans: first.vTrans, layers};
}

/** cos/sin pairs of the rotation by `delta`, exactly as ggml_rope_cache_init computes them (f32 steps). */
export function ropeCache(delta: number, params: RopeParams): Float32Array {
    const half = params.nRot / 2;
    const cache = new Float32Array(params.nRot);
    const f = Math.fround;
    const thetaScale = f(Math.pow(params.freqBase, f(-2 / params.nRot)));
    const freqScale = f(params.freqScale);
    let theta = f(delta);
    for (let i = 0; i < half; i++) {
        const ff = params.freqFactors != null ? params.freqFactors[i]! : 1;
        const angle = f(freqScale * f(theta / ff));
        cache[2 * i] = f(Math.cos(angle));
        cache[2 * i + 1] = f(Math.sin(angle));
        theta = f(theta * thetaScale);
    }
    return cache;
}

/**
 * Rotates one f32 head in place, as rotate_pairs does: f32 products and sums (each `fround` is the f32 rounding of
 * an exact double product or sum, so this matches the kernel's f32 arithmetic bit for bit without FMA).
 */
function rotateHead(x: Float32Array, base: number, cache: Float32Array, ropeType: RopeType, nRot: number): void {
    const f = Math.fround;
    const half = nRot / 2;
    if (ropeType === "norm") {
        for (let i = 0, a = base; i < half; i++, a += 2) {
            const c = cache[2 * i]!, s = cache[2 * i + 1]!;
            const x0 = x[a]!, x1 = x[a + 1]!;
            x[a] = f(x0 * c) - f(x1 * s);
            x[a + 1] = f(x0 * s) + f(x1 * c);
        }
    } else {
        for (let i = 0, a = base, b = base + half; i < half; i++, a++, b++) {
            const c = cache[2 * i]!, s = cache[2 * i + 1]!;
            const x0 = x[a]!, x1 = x[b]!;
            x[a] = f(x0 * c) - f(x1 * s);
            x[b] = f(x0 * s) + f(x1 * c);
        }
    }
}

/**
 * Rotates K rows (`cellCount * rowSize` bytes of f16 or f32) by `delta` (one value for all cells, or one per cell).
 * Returns new bytes unless `inPlace` (the source may be a cache entry shared with others).
 */
export function ropeShiftRows(k: KvRows, delta: number | ArrayLike<number>, params: RopeParams, options: {inPlace?: boolean} = {}): KvRows {
    if (k.type !== ggmlTypeF16 && k.type !== ggmlTypeF32)
        throw new RopeUnsupportedError(`cannot rotate ${ggmlTypeName(k.type)} keys (only f16 and f32)`);
    const elemSize = k.type === ggmlTypeF16 ? 2 : 4;
    const rowElems = k.rowSize / elemSize;
    if (!Number.isInteger(rowElems) || rowElems % params.headDim !== 0)
        throw new RopeUnsupportedError(`a K row of ${rowElems} elements is not a whole number of ${params.headDim}-element heads`);
    const cellCount = k.rows.byteLength / k.rowSize;
    if (!Number.isInteger(cellCount))
        throw new KvBlobError(`K rows of ${k.rows.byteLength} bytes are not a whole number of ${k.rowSize}-byte rows`);
    if (typeof delta !== "number" && delta.length !== cellCount)
        throw new KvBlobError(`${delta.length} deltas for ${cellCount} cells`);

    // A fresh, aligned copy unless rotating in place on an aligned buffer.
    const aligned = k.rows.byteOffset % elemSize === 0;
    // (`new Uint8Array(view)` copies; a Node Buffer's slice() would not.)
    const out = options.inPlace && aligned ? k.rows : new Uint8Array(k.rows);
    if (params.ropeType === "none")
        return {type: k.type, rowSize: k.rowSize, rows: out};

    const nHeads = rowElems / params.headDim;
    const caches = new Map<number, Float32Array>();
    const cacheFor = (d: number) => {
        let cache = caches.get(d);
        if (cache == null) {
            cache = ropeCache(d, params);
            caches.set(d, cache);
        }
        return cache;
    };

    const row = new Float32Array(rowElems);
    const halves = k.type === ggmlTypeF16 ? new Uint16Array(out.buffer, out.byteOffset, out.byteLength / 2) : null;
    const floats = k.type === ggmlTypeF32 ? new Float32Array(out.buffer, out.byteOffset, out.byteLength / 4) : null;
    for (let cell = 0; cell < cellCount; cell++) {
        const d = typeof delta === "number" ? delta : delta[cell]!;
        if (d === 0)
            continue;
        const cache = cacheFor(d);
        const start = cell * rowElems;
        if (halves != null) {
            const src = halves.subarray(start, start + rowElems);
            f16ToF32(src, row);
            for (let h = 0; h < nHeads; h++)
                rotateHead(row, h * params.headDim, cache, params.ropeType, params.nRot);
            f32ToF16(row, src);
        } else {
            const target = floats!.subarray(start, start + rowElems);
            for (let h = 0; h < nHeads; h++)
                rotateHead(target, h * params.headDim, cache, params.ropeType, params.nRot);
        }
    }
    return {type: k.type, rowSize: k.rowSize, rows: out};
}

/**
 * `body` moved by `delta` positions: every layer's K rows rotated, every cell's position shifted; V is shared with
 * the source (not copied). `delta` may be one value or one per cell.
 */
export function ropeShiftBody(body: KvBody, delta: number | ArrayLike<number>, params: RopeParams): KvBody {
    const at = (index: number) => typeof delta === "number" ? delta : delta[index]!;
    return {
        ...withPositions(body, (pos, index) => pos + at(index)),
        layers: body.layers.map(({k, v}) => ({k: ropeShiftRows(k, delta, params), v}))
    };
}
