import {open, stat} from "node:fs/promises";
import {readGgufFileInfo, type GgufFileInfo} from "node-llama-cpp";
import {EngineError} from "../contract/index.js";
import {checkGgufHeader, checkGgufInfo} from "./gguf-bounds.js";

const ggufMagic = "GGUF";

export type GgufSummary = {
    sizeBytes: number;
    architecture: string | null;
    name: string | null;
    contextLength: number | null;
    hasChatTemplate: boolean;
    info: GgufFileInfo;
};

/**
 * Checks that a path is a readable GGUF file before anything tries to load it, so the user gets
 * "not a GGUF model" instead of a native loader failure.
 */
export async function inspectGguf(filePath: string): Promise<GgufSummary> {
    let sizeBytes: number;
    try {
        const stats = await stat(filePath);
        if (!stats.isFile())
            throw new EngineError("model_invalid", `${filePath} is not a file`);

        sizeBytes = stats.size;
    } catch (error) {
        if (error instanceof EngineError)
            throw error;

        throw new EngineError("model_missing", `model file not found: ${filePath}`, {cause: error});
    }

    const handle = await open(filePath, "r");
    try {
        const head = Buffer.alloc(4);
        const {bytesRead} = await handle.read(head, 0, 4, 0);
        if (bytesRead < 4 || head.toString("latin1") !== ggufMagic)
            throw new EngineError("model_invalid", `${filePath} is not a GGUF model file (it does not start with "GGUF")`);

        const problem = await checkGgufHeader(handle, sizeBytes);
        if (problem != null)
            throw new EngineError("model_invalid", `${filePath} is a damaged GGUF file: ${problem}`);
    } finally {
        await handle.close();
    }

    let info: GgufFileInfo;
    try {
        info = await readGgufFileInfo(filePath, {readTensorInfo: true, logWarnings: false});
    } catch (error) {
        throw new EngineError("model_invalid", `${filePath} is a damaged GGUF file: ${(error as Error).message}`, {cause: error});
    }

    const problem = checkGgufInfo(info, sizeBytes);
    if (problem != null)
        throw new EngineError("model_invalid", `${filePath} is a damaged or absurd GGUF file: ${problem}`);

    const metadata = info.metadata as Record<string, unknown> & {
        general?: {architecture?: string, name?: string},
        tokenizer?: {chat_template?: string}
    };
    const architecture = metadata.general?.architecture ?? null;
    const archMetadata = architecture != null ? metadata[architecture] as {context_length?: number} | undefined : undefined;

    return {
        sizeBytes,
        architecture,
        name: metadata.general?.name ?? null,
        contextLength: archMetadata?.context_length != null ? Number(archMetadata.context_length) : null,
        hasChatTemplate: typeof metadata.tokenizer?.chat_template === "string" && metadata.tokenizer.chat_template !== "",
        info
    };
}
