import {GgmlType, type GgufFileInfo, GgufFileType} from "node-llama-cpp";
import type {ModelDetails, ModelInfo} from "../contract/index.js";
import {inspectGguf} from "./gguf-check.js";

/** GGUF's general.file_type as people write it: MOSTLY_Q4_K_M → "Q4_K_M", ALL_F32 → "F32". */
export function quantizationName(fileType: unknown): string | null {
    if (typeof fileType !== "number")
        return null;
    const name = (GgufFileType as unknown as Record<number, string | undefined>)[fileType];
    return name == null ? null : name.replace(/^(MOSTLY|ALL)_/, "");
}

/** Files without general.file_type (llama2.c exports, say): the type most weight matrices have. */
export function dominantTensorType(info: GgufFileInfo | undefined): string | null {
    const counts = new Map<number, number>();
    for (const tensor of info?.tensorInfo ?? [])
        if (tensor.dimensions.length >= 2)
            counts.set(tensor.ggmlType, (counts.get(tensor.ggmlType) ?? 0) + 1);
    const [type] = [...counts.entries()].sort((a, b) => b[1] - a[1])[0] ?? [];
    return type === undefined ? null : (GgmlType as unknown as Record<number, string | undefined>)[type] ?? null;
}

const known = new Map<string, string | null>();

/** Each model's quantization from its file's metadata, read once per path and size. */
export async function modelDetails(models: ModelInfo[]): Promise<ModelDetails[]> {
    return Promise.all(models.map(async (model) => {
        const key = `${model.path}\u0000${model.sizeBytes}`;
        if (!known.has(key)) {
            const summary = await inspectGguf(model.path).catch(() => null);
            const fileType = (summary?.info.metadata as {general?: {file_type?: unknown}} | undefined)?.general?.file_type;
            known.set(key, quantizationName(fileType) ?? dominantTensorType(summary?.info));
        }
        return {id: model.id, quantization: known.get(key) ?? null};
    }));
}
