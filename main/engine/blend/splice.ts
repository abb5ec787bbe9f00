/**
 * The blended sequence's KV, built natively in one pass (native/src/kv_splice.cpp): each part's cells at their final
 * positions with K re-positioned by the part's delta, V copied, loaded into the sequence. Same result as
 * `concatBlobs` over `ropeShiftBody` parts then `loadSequenceState` (the TypeScript reference in
 * test/helpers/kv-reference.ts the tests compare it with), without three copies of the KV in JavaScript.
 */
import type {LlamaContextSequence, Token} from "node-llama-cpp";
import {isTransposed, type KvBody, KvBlobError, type KvRows, layerShape, validateKvBody} from "../kv/kv-blob.js";
import {type SpliceResult, type SpliceRope, type SpliceSpec, spliceSequenceState} from "../native/native-addon.js";
import type {ResidentEntry} from "../kv/resident-tier.js";
import type {RopeParams} from "../kv/rope-params.js";
import type {CodedChunk} from "../kv/chunk-container.js";
import {fingerprintBytes} from "../kv/kv-codec.js";

/**
 * A part from host memory (K rotated on the CPU), a disk chunk's codec container (decoded straight into its cells, K at
 * their positions: chunk-container.ts CodedChunk), from the resident tier (placed and copied on the device), or cells
 * taken for positions a later decode writes in full (placed with the resident parts, in their order; no rows copied).
 */
export type SplicePartInput = {body: KvBody, delta: number} | {coded: CodedChunk, delta: number} | {resident: ResidentEntry, delta: number} |
    {placeholder: number[]};

export function spliceRopeOf(rope: RopeParams): SpliceRope {
    return {
        kind: rope.ropeType === "none" ? 0 : rope.ropeType === "norm" ? 1 : 2,
        nRot: rope.nRot,
        headDim: rope.headDim,
        freqBase: rope.freqBase,
        freqScale: rope.freqScale,
        freqFactors: rope.freqFactors
    };
}

/** The native plan for `parts`; throws {@link KvBlobError} when they do not share one layout. */
export type SpliceOptions = {
    threads: number, nStream?: number, pinned?: boolean, overrides?: SpliceSpec["overrides"],
    /** The model fingerprint (32 hex characters) coded parts' containers must carry; required with coded parts. */
    codedFingerprint?: string
};

export function spliceSpecOf(parts: readonly SplicePartInput[], rope: RopeParams, options: SpliceOptions): SpliceSpec {
    const host = parts.flatMap((part) => "body" in part && part.body.cells.length > 0 ? [part] : []);
    // Host parts with rows and coded parts keep their order among themselves: it becomes their cells' order.
    const written = parts.flatMap((part) => ("body" in part && part.body.cells.length > 0) || "coded" in part ? [part] : []);
    const resident = parts.flatMap((part) => "resident" in part && part.resident.positions.length > 0 ? [part] : []);
    // Device-placed parts (resident rows and placeholders) keep their order: it becomes the cells' order.
    const placed = parts.flatMap((part) => ("resident" in part && part.resident.positions.length > 0) || ("placeholder" in part && part.placeholder.length > 0) ? [part] : []);
    const first = host[0]?.body;
    if (first == null && resident.length === 0)
        throw new KvBlobError(written.length > 0 ? "coded parts need a part with rows beside them (it gives the cache's layout)" : "nothing to splice: every part is empty");
    const shape = first != null ? layerShape(first) : "";
    for (const {body} of host) {
        validateKvBody(body);
        if (layerShape(body) !== shape)
            throw new KvBlobError("cannot splice KV caches of different layouts (layer count, types, row sizes or V transposition differ): they come from different models or context settings");
    }

    return {
        nStream: options.nStream ?? first?.nStream ?? 1,
        stream: 0,
        vTrans: first?.vTrans ?? false,
        layers: first == null ? resident[0]!.resident.layers : first.layers.map(({k, v}) => isTransposed(v)
            ? {kType: k.type, kRowSize: k.rowSize, vType: v.type, vElemSize: v.elemSize, nEmbdV: v.nEmbd}
            : {kType: k.type, kRowSize: k.rowSize, vType: v.type, vRowSize: v.rowSize}),
        rope: spliceRopeOf(rope),
        parts: [
            ...written.map((part) => "coded" in part
                ? {positions: Int32Array.from(part.coded.tokens, (_, i) => part.coded.firstPos + i + part.delta), delta: part.delta, coded: part.coded.bytes}
                : {
                    positions: Int32Array.from(part.body.cells, (cell) => cell.pos + part.delta),
                    delta: part.delta,
                    k: part.body.layers.map((layer) => layer.k.rows),
                    v: part.body.layers.map((layer) => isTransposed(layer.v) ? layer.v.data : layer.v.rows)
                }),
            ...placed.map((part) => "placeholder" in part
                ? {positions: Int32Array.from(part.placeholder), delta: 0 as const, placeholder: true as const}
                : {positions: part.resident.positions.map((pos) => pos + part.delta), delta: part.delta, resident: part.resident.handle})
        ],
        threads: Math.max(1, Math.floor(options.threads)),
        ...(options.pinned != null ? {pinned: options.pinned} : {}),
        ...(options.overrides != null && options.overrides.length > 0 ? {overrides: options.overrides} : {}),
        ...(written.length > host.length ? {codedFingerprint: fingerprintBytes(options.codedFingerprint ?? "")} : {})
    };
}

/**
 * Splices `parts` into `sequence` (which then holds `tokens`). Where a coded part fails (a container the decoder
 * refuses, before any cell is taken or while writing them, when the splice clears the sequence), every coded part is
 * loaded through `decodeInstead` (the cache's own decode, which drops a damaged file and computes the chunk) and the
 * splice runs once more with rows.
 */
export async function spliceIntoSequence(sequence: LlamaContextSequence, parts: readonly SplicePartInput[], tokens: readonly Token[],
    rope: RopeParams, options: SpliceOptions & {decodeInstead?: (coded: CodedChunk) => Promise<KvBody>}): Promise<SpliceResult> {
    try {
        return await spliceSequenceState(sequence, spliceSpecOf(parts, rope, options), tokens);
    } catch (error) {
        if (options.decodeInstead == null || !parts.some((part) => "coded" in part))
            throw error;
        const decodeInstead = options.decodeInstead;
        const withRows = await Promise.all(parts.map(async (part) => "coded" in part
            ? {body: await decodeInstead(part.coded), delta: part.delta + part.coded.firstPos - 1} : part));
        return spliceSequenceState(sequence, spliceSpecOf(withRows, rope, options), tokens);
    }
}

/**
 * hkvd's chunk parts with cells for the labels between them, in prompt order, so that each cell's index follows its
 * position as in a prefill; the fused decode then writes every label token in full into its cell (overwrite slots).
 * - Resident parts get placeholder parts (cells, no rows): the GPU's flash attention runs each query tile up to the
 *   last cell its mask leaves open, and labels given new cells after every chunk would leave one open at the end of the
 *   cache for every tile (twice a causal prefill's work).
 * - Host parts get parts of zero rows shaped like the chunks': attention then sums the cells in the prefill's order.
 *   With the labels' cells after every chunk cell instead, hkvd at ratio 1.0 was 2.55e-2 from a prefill's logits on
 *   stories260K (chunk-head's scattered decode, cells in order: 3.1e-3), whatever the check layer or batch size.
 * Mixed parts, transposed V, or parts that do not match the layout's chunks stay as they are.
 */
export function withLabelCells(chunkParts: SplicePartInput[], layout: ReadonlyArray<{segment: {kind: string, tokens: readonly unknown[]}, start: number}>,
    headerEnd: number, tailStart: number): SplicePartInput[] {
    const labelPart = labelPartMaker(chunkParts);
    if (labelPart == null)
        return chunkParts;
    const ordered: SplicePartInput[] = [];
    let chunkIndex = 0;
    for (const {segment, start} of layout) {
        if (segment.kind === "chunk")
            ordered.push(chunkParts[chunkIndex++]!);
        else if (start >= headerEnd && start < tailStart && segment.tokens.length > 0)
            ordered.push(labelPart(start, segment.tokens.length));
    }
    return chunkIndex === chunkParts.length && ordered.length >= chunkParts.length ? ordered : chunkParts;
}

/** How a label at `start` of `length` tokens is given cells beside `chunkParts`, or null when it cannot be. */
function labelPartMaker(chunkParts: readonly SplicePartInput[]): ((start: number, length: number) => SplicePartInput) | null {
    if (chunkParts.length > 0 && chunkParts.every((part) => "resident" in part))
        return (start, length) => ({placeholder: Array.from({length}, (_, index) => start + index)});
    const bodies = chunkParts.flatMap((part) => "body" in part ? [part.body] : []);
    const shape = bodies[0];
    if (shape == null || bodies.length !== chunkParts.length || shape.vTrans || shape.cells.length === 0)
        return null;
    const layers = shape.layers.map((layer) => ({k: layer.k, v: layer.v as KvRows}));
    const widest = Math.max(...layers.map((layer) => Math.max(layer.k.rowSize, layer.v.rowSize)));
    let zeros = new Uint8Array(0);
    return (start, length) => {
        if (zeros.length < length * widest)
            zeros = new Uint8Array(length * widest); // read only: every layer's K and V rows view the same zeros
        return {
            // cached at positions 1..length like a chunk, moved to start..; a zero K row stays zero when rotated
            delta: start - 1,
            body: {
                nStream: shape.nStream, stream: shape.stream, vTrans: false,
                cells: Array.from({length}, (_, index) => ({pos: index + 1, seqIds: [...shape.cells[0]!.seqIds]})),
                layers: layers.map(({k, v}) => ({
                    k: {type: k.type, rowSize: k.rowSize, rows: zeros.subarray(0, length * k.rowSize)},
                    v: {type: v.type, rowSize: v.rowSize, rows: zeros.subarray(0, length * v.rowSize)}
                }))
            }
        };
    };
}
