import {mkdtemp, rm} from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import {fileURLToPath} from "node:url";

export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..");
export const sharedModelsDir = path.resolve(repoRoot, "..", "shared", "models");
export const stories260kPath = path.join(sharedModelsDir, "stories260K.gguf");
export const tinyRandomLlama2Path = path.join(sharedModelsDir, "llama-2-tiny-random.gguf");
export const weftBin = path.join(repoRoot, "bin", "weft.js");

/** Tests on 2 cores must pin threads (see DEVELOPERS.md); the runner sets WEFT_THREADS=1. */
export const testThreads = Number.parseInt(process.env.WEFT_THREADS ?? "1", 10) || 1;

export async function makeTempDir(prefix = "weft-test-"): Promise<{dir: string, cleanup(): Promise<void>}> {
    const dir = await mkdtemp(path.join(os.tmpdir(), prefix));
    return {dir, cleanup: () => rm(dir, {recursive: true, force: true})};
}
