import {randomBytes} from "node:crypto";
import {mkdir, readFile, rename, rm, writeFile} from "node:fs/promises";
import path from "node:path";
import type {z} from "zod";

/**
 * Writes through a temp file and a rename, so a crash mid-write leaves the previous version intact.
 */
export async function writeFileAtomic(filePath: string, data: string | Uint8Array): Promise<void> {
    await mkdir(path.dirname(filePath), {recursive: true});
    const tempPath = `${filePath}.${process.pid}.${randomBytes(4).toString("hex")}.tmp`;
    try {
        await writeFile(tempPath, data);
        await rename(tempPath, filePath);
    } catch (error) {
        await rm(tempPath, {force: true});
        throw error;
    }
}

export async function writeJsonAtomic(filePath: string, value: unknown): Promise<void> {
    await writeFileAtomic(filePath, JSON.stringify(value, null, 2) + "\n");
}

/**
 * Reads a JSON file against a schema. A missing file gives the fallback; a damaged one is kept aside as
 * `<name>.corrupt-<time>` (never silently overwritten) and the fallback is used.
 */
export async function readJsonOr<S extends z.ZodTypeAny>(filePath: string, schema: S, fallback: z.output<S>): Promise<z.output<S>> {
    let text: string;
    try {
        text = await readFile(filePath, "utf8");
    } catch (error) {
        if ((error as NodeJS.ErrnoException).code === "ENOENT")
            return fallback;

        throw error;
    }

    try {
        return schema.parse(JSON.parse(text));
    } catch {
        await rename(filePath, `${filePath}.corrupt-${Date.now()}`).catch(() => {});
        return fallback;
    }
}
