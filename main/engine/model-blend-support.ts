import {stat} from "node:fs/promises";
import {readGgufFileInfo} from "node-llama-cpp";
import type {ModelBlendSupport, ModelInfo} from "../contract/index.js";
import {blendSupportOf} from "./blend/blend-support.js";

/**
 * Whether each registered model can blend, for `listModels`: read from the model file's header (RoPE metadata and
 * frequency-factor tensor) and remembered per file size and modification time, so listing stays cheap and a
 * replaced file is read again. Never throws: an unreadable file is a reason.
 */
export class ModelBlendSupportCache {
    private readonly entries = new Map<string, {stamp: string, support: Promise<ModelBlendSupport>}>();

    public async of(info: ModelInfo): Promise<ModelBlendSupport> {
        let stamp: string;
        try {
            const stats = await stat(info.path);
            stamp = `${stats.size}:${stats.mtimeMs}`;
        } catch {
            return {canBlend: false, reason: `model "${info.name}" cannot blend: its file is missing (${info.path})`};
        }
        const cached = this.entries.get(info.path);
        if (cached?.stamp === stamp)
            return cached.support;
        const support = read(info);
        this.entries.set(info.path, {stamp, support});
        return support;
    }
}

async function read(info: ModelInfo): Promise<ModelBlendSupport> {
    try {
        const fileInfo = await readGgufFileInfo(info.path, {readTensorInfo: true, logWarnings: false});
        const support = await blendSupportOf(info.path, fileInfo, {name: info.name});
        return support.canBlend ? {canBlend: true, reason: null} : {canBlend: false, reason: support.reason};
    } catch (error) {
        return {canBlend: false, reason: `model "${info.name}" cannot blend: its file could not be read (${(error as Error).message})`};
    }
}
