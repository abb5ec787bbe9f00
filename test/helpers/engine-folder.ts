// A real engine over a temporary data dir and a folder of text files, with stories260K added: the set-up the model
// tests of the library and the blend engine share.
import {mkdir, writeFile} from "node:fs/promises";
import path from "node:path";
import {Engine} from "../../main/engine/engine.js";
import {makeTempDir, stories260kPath, testThreads} from "./paths.js";

export type EngineFolder = {engine: Engine, folder: string, dataDir: string, cleanup(): Promise<void>};

/** `files` maps a file name (in the folder) to its text; more models than stories260K go in `models`. */
export async function openEngineWithFolder(files: Record<string, string>, options: {models?: string[], residentKvBytes?: number} = {}): Promise<EngineFolder> {
    const temp = await makeTempDir();
    const folder = path.join(temp.dir, "stories");
    const dataDir = path.join(temp.dir, "data");
    await mkdir(folder);
    for (const [name, text] of Object.entries(files))
        await writeFile(path.join(folder, name), text);

    const engine = await Engine.open({dataDir, threads: testThreads, gpu: false,
        ...(options.residentKvBytes != null ? {residentKvBytes: options.residentKvBytes} : {})});
    for (const model of [stories260kPath, ...(options.models ?? [])])
        await engine.addModel({path: model});
    return {
        engine, folder, dataDir,
        async cleanup() {
            await engine.close();
            await temp.cleanup();
        }
    };
}
