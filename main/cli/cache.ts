import {commonOptions, parseCommandArgs, UsageError} from "./args.js";
import {openEngineFromFlags} from "./open-engine.js";
import {formatBytes, ProgressBar} from "./progress.js";

export const cacheUsage = `weft cache stats [--json]
weft cache clear
weft cache warm FOLDER              (computes the chunk KV caches of an ingested folder for the active model)`;

export async function cacheCommand(argv: string[]): Promise<number> {
    const {values, positionals} = parseCommandArgs(argv, commonOptions);
    const [action, target] = positionals;
    if (values.help || action == null) {
        console.log(cacheUsage);
        return values.help === true ? 0 : 2;
    }

    const engine = await openEngineFromFlags(values);
    try {
        switch (action) {
            case "stats": {
                const stats = await engine.cacheStats();
                if (values.json === true)
                    console.log(JSON.stringify(stats));
                else
                    console.log(`Chunk KV cache: RAM ${stats.ram.entries} entries (${formatBytes(stats.ram.bytes)} of ${formatBytes(stats.ram.budgetBytes)}), ` +
                        `disk ${stats.disk.entries} entries (${formatBytes(stats.disk.bytes)} of ${formatBytes(stats.disk.budgetBytes)}), ` +
                        `${stats.droppedCorrupt} damaged files dropped; ` +
                        `${stats.failures.chunkCachePut.count} chunk KVs not cached, ${stats.failures.residentAdmission.count} not kept resident` +
                        [stats.failures.chunkCachePut.lastError, stats.failures.residentAdmission.lastError]
                            .filter((error) => error != null).map((error) => ` (last: ${error})`).join(""));
                return 0;
            }
            case "clear":
                await engine.clearCache();
                console.log("Chunk KV caches cleared");
                return 0;
            case "warm": {
                if (target == null)
                    throw new UsageError(`cache warm needs a folder:\n${cacheUsage}`);

                const bar = new ProgressBar("Warming");
                const controller = new AbortController();
                const onSignal = () => controller.abort();
                process.once("SIGINT", onSignal);
                try {
                    const result = await engine.warmCache(target, {
                        signal: controller.signal,
                        onProgress: (done, total, computed) => bar.update(done, total, `${done}/${total} chunks, ${computed} computed`)
                    });
                    bar.finish(`${result.cancelled ? "Stopped" : "Warmed"}: ${result.done} of ${result.total} chunks ready, ${result.computed} computed now`);
                    if (values.json === true)
                        console.log(JSON.stringify(result));

                    return result.cancelled ? 130 : 0;
                } finally {
                    process.off("SIGINT", onSignal);
                }
            }
            default:
                throw new UsageError(`unknown cache action "${action}":\n${cacheUsage}`);
        }
    } finally {
        await engine.close();
    }
}
