import {Engine} from "../engine/engine.js";
import {resolveDataDir} from "../engine/data-dir.js";
import {parseGpu, parsePositiveInt} from "./args.js";

export async function openEngineFromFlags(values: {data?: string, threads?: string, gpu?: string}): Promise<Engine> {
    return Engine.open({
        dataDir: resolveDataDir(values.data),
        threads: parsePositiveInt(values.threads, "--threads"),
        gpu: parseGpu(values.gpu),
        // Another Weft process (the app, serve) writing the same data folder: say so, then wait for it.
        lockWait: {onWait: (message) => process.stderr.write(`weft: ${message}\n`)}
    });
}
