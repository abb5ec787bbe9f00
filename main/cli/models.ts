import {commonOptions, parseCommandArgs, UsageError} from "./args.js";
import {openEngineFromFlags} from "./open-engine.js";
import {formatBytes, ProgressBar} from "./progress.js";

export const modelsUsage = `weft models list [--json]            (each model, and whether the blend strategies can run on it)
weft models add PATH
weft models remove ID
weft models select ID
weft models pull URL_OR_HF_REF      (https://…/model.gguf or hf:user/repo/file.gguf; resumes)
weft models embedder ID|none        (the embedding model for hybrid retrieval, e.g. a bge-small or nomic-embed GGUF)`;

export async function modelsCommand(argv: string[]): Promise<number> {
    const {values, positionals} = parseCommandArgs(argv, commonOptions);
    const [action, target, ...rest] = positionals;
    if (values.help || action == null) {
        console.log(modelsUsage);
        return action == null && values.help !== true ? 2 : 0;
    }

    if (rest.length > 0)
        throw new UsageError(`unexpected argument "${rest[0]}"`);

    const needsTarget = ["add", "remove", "select", "pull", "embedder"];
    if (needsTarget.includes(action) && target == null)
        throw new UsageError(`models ${action} needs an argument:\n${modelsUsage}`);

    const engine = await openEngineFromFlags(values);
    try {
        const print = (value: unknown, text: string) => console.log(values.json === true ? JSON.stringify(value) : text);
        switch (action) {
            case "list": {
                const models = await engine.listModels();
                const {activeModelId} = await engine.getStatus();
                if (values.json === true)
                    console.log(JSON.stringify(models));
                else if (models.length === 0)
                    console.log("No models yet. Add a GGUF file with `weft models add PATH` or download one with `weft models pull URL`.");
                else
                    for (const model of models) {
                        // Whether the blend strategies (naive, chunk-head, hkvd) can run on it; if not, why on the next line.
                        const blend = model.blend.canBlend ? "blend   " : "no blend";
                        console.log(`${model.id === activeModelId ? "*" : " "} ${model.id.padEnd(28)} ${formatBytes(model.sizeBytes).padStart(10)}  ${blend}  ${model.path}`);
                        if (model.blend.reason != null)
                            console.log(`    ${model.blend.reason}; it answers with exact prefix reuse`);
                    }
                return 0;
            }
            case "add": {
                const model = await engine.addModel({path: target!});
                print(model, `Added ${model.id} (${model.name}, ${formatBytes(model.sizeBytes)})`);
                const listed = values.json === true ? undefined : (await engine.listModels()).find((entry) => entry.id === model.id);
                if (listed?.blend.reason != null)
                    console.log(`Note: ${listed.blend.reason}; it answers with exact prefix reuse`);
                return 0;
            }
            case "remove": {
                const result = await engine.removeModel({id: target!});
                print(result, result.removed ? `Removed ${target}` : `No model with id ${target}`);
                return result.removed ? 0 : 1;
            }
            case "select": {
                const model = await engine.selectModel({id: target!});
                print(model, `Selected ${model.id}`);
                return 0;
            }
            case "embedder": {
                const status = await engine.setEmbeddingModel({id: target === "none" ? null : target!});
                print(status, status.embeddingModelId != null
                    ? `Chunks will be embedded with ${status.embeddingModelId}; run \`weft ingest FOLDER\` to embed folders already added`
                    : "Retrieval is full-text only");
                return 0;
            }
            case "pull": {
                const bar = new ProgressBar("Downloading");
                const controller = new AbortController();
                const onSignal = () => controller.abort();
                process.once("SIGINT", onSignal);
                try {
                    const model = await engine.pullModel(target!, {
                        signal: controller.signal,
                        onProgress: ({downloadedBytes, totalBytes, bytesPerSecond}) =>
                            bar.update(downloadedBytes, totalBytes, `${formatBytes(downloadedBytes)} / ${formatBytes(totalBytes)} at ${formatBytes(bytesPerSecond)}/s`)
                    });
                    bar.finish(`Downloaded ${model.id} (${formatBytes(model.sizeBytes)}) to ${model.path}`);
                    print(model, `Added ${model.id}`);
                    return 0;
                } finally {
                    process.off("SIGINT", onSignal);
                }
            }
            default:
                throw new UsageError(`unknown models action "${action}":\n${modelsUsage}`);
        }
    } finally {
        await engine.close();
    }
}
