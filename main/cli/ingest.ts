import path from "node:path";
import {EngineError} from "../contract/index.js";
import {commonOptions, parseCommandArgs, UsageError} from "./args.js";
import {openEngineFromFlags} from "./open-engine.js";
import {formatBytes, ProgressBar} from "./progress.js";

export const ingestUsage = "weft ingest FOLDER [--data DIR] [--json]";

export async function ingestCommand(argv: string[]): Promise<number> {
    const {values, positionals} = parseCommandArgs(argv, commonOptions);
    if (values.help) {
        console.log(ingestUsage);
        return 0;
    }

    if (positionals.length !== 1)
        throw new UsageError(`ingest needs exactly one folder: ${ingestUsage}`);

    // A shell's relative path means the shell's folder; the engine itself takes absolute paths only.
    const engine = await openEngineFromFlags(values);
    const controller = new AbortController();
    const onSignal = () => controller.abort();
    process.once("SIGINT", onSignal);
    try {
        const bar = new ProgressBar("Indexing");
        for await (const event of engine.ingestFolder({path: path.resolve(positionals[0]!)}, controller.signal)) {
            if (event.type === "progress") {
                const p = event.progress;
                bar.update(p.filesDone, p.filesTotal,
                    `${p.filesDone}/${p.filesTotal} files, ${p.chunks} chunks, ${formatBytes(p.bytesPerSecond)}/s`);
            } else if (event.type === "error")
                throw EngineError.fromShape(event.error);
            else {
                const s = event.summary;
                bar.finish(`${event.cancelled ? "Stopped" : "Indexed"} ${s.folder}: ${s.files} files, ${s.chunks} chunks ` +
                    `(${s.changedFiles} changed, ${s.removedFiles} removed, ${s.skipped.length} skipped, ${s.errors.length} errors) ` +
                    `in ${(s.elapsedMs / 1000).toFixed(1)} s`);
                if (values.json === true)
                    console.log(JSON.stringify(s));
                else
                    for (const problem of [...s.errors.map((e) => ({...e, kind: "error"})), ...s.skipped.map((e) => ({...e, kind: "skipped"}))])
                        console.log(`  ${problem.kind === "error" ? "!" : "-"} ${problem.path}: ${problem.reason}`);

                return event.cancelled ? 130 : 0;
            }
        }
        return 1;
    } finally {
        process.off("SIGINT", onSignal);
        await engine.close();
    }
}
