import type {FileHandle} from "node:fs/promises";
import type {GgufFileInfo} from "node-llama-cpp";

/**
 * Bounds a GGUF must respect before llama.cpp sees it: llama.cpp trusts counts and sizes in the header, and an
 * absurd one ends the process (an assertion, exit 134) instead of failing the load. Each check returns the reason
 * the file is refused, or null.
 */

/** Magic (4), version (u32), tensor count (u64), metadata count (u64). */
const headerBytes = 24;
const maxTensors = 1_000_000;
const maxMetadataEntries = 1_000_000;
/** llama.cpp's LLAMA_MAX_LAYERS. */
const maxLayers = 512;
const maxDimension = 2 ** 40;

/** The smallest a tensor info (name length, a 1-byte name, n_dims, one dim, type, offset) or a metadata entry can be. */
const minTensorInfoBytes = 8 + 1 + 4 + 8 + 4 + 8;
const minMetadataEntryBytes = 8 + 1 + 4 + 1;

/** Checks the fixed header against the file's size, before a parser allocates anything from its counts. */
export async function checkGgufHeader(handle: FileHandle, fileBytes: number): Promise<string | null> {
    if (fileBytes < headerBytes)
        return `too short to be a model (${fileBytes} bytes; the GGUF header alone is ${headerBytes})`;

    const head = Buffer.alloc(headerBytes);
    await handle.read(head, 0, headerBytes, 0);
    const version = head.readUInt32LE(4);
    if (version !== 2 && version !== 3)
        return `unsupported GGUF version ${version} (Weft reads versions 2 and 3)`;

    const tensors = head.readBigUInt64LE(8);
    const entries = head.readBigUInt64LE(16);
    if (tensors === 0n || tensors > BigInt(maxTensors) || tensors * BigInt(minTensorInfoBytes) > BigInt(fileBytes))
        return `its tensor count (${tensors}) is impossible for a file of ${fileBytes} bytes (truncated or damaged header)`;

    if (entries > BigInt(maxMetadataEntries) || entries * BigInt(minMetadataEntryBytes) > BigInt(fileBytes))
        return `its metadata count (${entries}) is impossible for a file of ${fileBytes} bytes (truncated or damaged header)`;

    return null;
}

/** [bytes per block, elements per block] of ggml's tensor types (ggml.c's type traits). */
const typeTraits = new Map<number, [number, number]>([
    [0, [4, 1]], [1, [2, 1]], [2, [18, 32]], [3, [20, 32]], [6, [22, 32]], [7, [24, 32]], [8, [34, 32]], [9, [36, 32]],
    [10, [84, 256]], [11, [110, 256]], [12, [144, 256]], [13, [176, 256]], [14, [210, 256]], [15, [292, 256]],
    [16, [66, 256]], [17, [74, 256]], [18, [98, 256]], [19, [50, 256]], [20, [18, 32]], [21, [110, 256]], [22, [82, 256]],
    [23, [136, 256]], [24, [1, 1]], [25, [2, 1]], [26, [4, 1]], [27, [8, 1]], [28, [8, 1]], [29, [56, 256]], [30, [2, 1]],
    [34, [54, 256]], [35, [66, 256]], [39, [17, 32]]
]);

/** Checks the parsed header: tensors inside the file, dimensions and the architecture's counts within llama.cpp's limits. */
export function checkGgufInfo(info: GgufFileInfo, fileBytes: number): string | null {
    const tensors = info.tensorInfo ?? [];
    if (BigInt(tensors.length) !== BigInt(info.tensorCount))
        return `the header lists ${info.tensorCount} tensors but ${tensors.length} could be read (truncated)`;

    if (info.infoEndOffset != null && info.infoEndOffset > fileBytes)
        return "the header runs past the end of the file (truncated)";

    let maxBlock = -1;
    for (const tensor of tensors) {
        const dims = tensor.dimensions.map(Number);
        if (dims.length === 0 || dims.length > 4 || dims.some((dim) => !Number.isInteger(dim) || dim < 1 || dim > maxDimension))
            return `tensor ${tensor.name} has impossible dimensions [${dims.join(", ")}]`;

        const start = Number(tensor.fileOffset);
        const traits = typeTraits.get(tensor.ggmlType);
        const elements = dims.reduce((product, dim) => product * dim, 1);
        const bytes = traits != null ? Math.ceil(elements / traits[1]) * traits[0] : 1;
        if (!Number.isSafeInteger(start) || start < 0 || start + bytes > fileBytes)
            return `tensor ${tensor.name} lies past the end of the file (truncated: it needs bytes up to ${start + bytes}, the file has ${fileBytes})`;

        const block = /^blk\.(\d+)\./.exec(tensor.name);
        if (block != null)
            maxBlock = Math.max(maxBlock, Number(block[1]));
    }

    const architecture = (info.metadata as {general?: {architecture?: string}}).general?.architecture;
    const arch = architecture != null ? (info.metadata as unknown as Record<string, unknown>)[architecture] as Record<string, unknown> | undefined : undefined;
    if (arch == null)
        return null;

    const count = (value: unknown) => typeof value === "number" || typeof value === "bigint" ? Number(value) : null;
    const blocks = count(arch.block_count);
    if (blocks != null) {
        if (!Number.isInteger(blocks) || blocks < 1 || blocks > maxLayers)
            return `${architecture}.block_count = ${blocks} is outside 1-${maxLayers}`;

        if (maxBlock >= 0 && blocks !== maxBlock + 1)
            return `${architecture}.block_count = ${blocks}, but the file holds the tensors of ${maxBlock + 1} blocks`;
    }

    const attention = arch.attention as Record<string, unknown> | undefined;
    const heads = count(attention?.head_count);
    const kvHeads = count(attention?.head_count_kv);
    if (heads != null && (!Number.isInteger(heads) || heads < 1 || heads > 65_536))
        return `${architecture}.attention.head_count = ${heads} is impossible`;

    if (kvHeads != null && heads != null && (!Number.isInteger(kvHeads) || kvHeads < 1 || kvHeads > heads || heads % kvHeads !== 0))
        return `${architecture}.attention.head_count_kv = ${kvHeads} does not divide head_count = ${heads}`;

    const embedding = count(arch.embedding_length);
    if (embedding != null && (!Number.isInteger(embedding) || embedding < 1 || embedding > 1 << 20))
        return `${architecture}.embedding_length = ${embedding} is impossible`;

    return null;
}
