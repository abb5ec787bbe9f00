// A model's identity for the chunk KV cache: caches computed with another model file or other KV-relevant context
// settings must miss.
import {createHash} from "node:crypto";
import {createReadStream} from "node:fs";
import {stat} from "node:fs/promises";
import path from "node:path";

/** Bytes hashed at each end of the model file. */
const fingerprintEdgeBytes = 1024 * 1024;

export type ModelFingerprintOptions = {
    modelPath: string;
    /** KV cache element type; Weft keeps its cache in f16 (a quantized KV cache has another layout). */
    kvType?: "f16";
    /** Flash attention on stores V untransposed (v_trans = 0), off stores it transposed. */
    flashAttention: boolean;
    /** Anything else that changes the KV bytes (e.g. the llama.cpp build, a RoPE base override). */
    extra?: Record<string, string | number | boolean | null>;
};

async function hashRange(filePath: string, start: number, end: number): Promise<string> {
    const hash = createHash("sha256");
    if (end > start) {
        for await (const chunk of createReadStream(filePath, {start, end: end - 1}))
            hash.update(chunk as Buffer);
    }
    return hash.digest("hex");
}

/**
 * Identity of a model file plus the context settings that change the KV layout; independent of the context size.
 * Path, size and mtime catch a replaced file cheaply; sha256 of the first and last MiB catches a copy or an edit.
 * Returns 32 hex characters.
 */
export async function modelFingerprint(options: ModelFingerprintOptions): Promise<string> {
    const modelPath = path.resolve(options.modelPath);
    const info = await stat(modelPath);
    const size = info.size;
    const head = await hashRange(modelPath, 0, Math.min(size, fingerprintEdgeBytes));
    const tail = await hashRange(modelPath, Math.max(0, size - fingerprintEdgeBytes), size);
    const extra = Object.fromEntries(Object.entries(options.extra ?? {}).sort(([a], [b]) => a < b ? -1 : a > b ? 1 : 0));
    const identity = JSON.stringify({
        v: 1, path: modelPath, size, mtimeMs: Math.trunc(info.mtimeMs), head, tail,
        kvType: options.kvType ?? "f16", flashAttention: options.flashAttention, extra
    });
    return createHash("sha256").update(identity).digest("hex").slice(0, 32);
}
