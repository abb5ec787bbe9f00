import {existsSync} from "node:fs";
import {AskResult, ChatRequest, EngineError, RequestedStrategy} from "../contract/index.js";
import {commonOptions, parseCommandArgs, parseNumberInRange, parsePositiveInt, UsageError} from "./args.js";
import {openEngineFromFlags} from "./open-engine.js";

export const askUsage = `weft ask "QUESTION" [--model PATH_OR_ID] [--data DIR] [--json]
         [--max-tokens N] [--temperature T] [--strategy auto|full|prefix|naive|chunk-head|hkvd] [--ratio R] [--threads N] [--gpu auto|cpu|cuda|vulkan|metal]`;

export async function askCommand(argv: string[]): Promise<number> {
    const {values, positionals} = parseCommandArgs(argv, {
        ...commonOptions,
        model: {type: "string"},
        "max-tokens": {type: "string"},
        temperature: {type: "string"},
        strategy: {type: "string"},
        ratio: {type: "string"}
    });
    if (values.help) {
        console.log(askUsage);
        return 0;
    }

    const question = positionals.join(" ").trim();
    if (question === "")
        throw new UsageError(`ask needs a question: ${askUsage}`);

    const strategy = values.strategy != null ? RequestedStrategy.safeParse(values.strategy) : undefined;
    if (strategy != null && !strategy.success)
        throw new UsageError(`--strategy must be one of ${RequestedStrategy.options.join(", ")}`);

    const request = ChatRequest.parse({
        question,
        maxTokens: parsePositiveInt(values["max-tokens"], "--max-tokens"),
        temperature: parseNumberInRange(values.temperature, "--temperature", 0, 2),
        strategy: strategy?.data,
        ratio: parseNumberInRange(values.ratio, "--ratio", 0, 1)
    });

    const engine = await openEngineFromFlags(values);
    try {
        if (values.model != null) {
            const known = (await engine.listModels()).find((model) => model.id === values.model);
            request.modelId = known != null
                ? known.id
                : existsSync(values.model)
                    ? (await engine.addModel({path: values.model})).id
                    : undefined;
            if (request.modelId == null)
                throw new EngineError("model_missing", `model not found: "${values.model}" is neither a file nor a registered model id`);
        }

        const controller = new AbortController();
        const onSignal = () => controller.abort();
        process.once("SIGINT", onSignal);
        try {
            for await (const event of engine.chat(ChatRequest.parse(request), controller.signal)) {
                if (event.type === "token" && values.json !== true)
                    process.stdout.write(event.text);
                else if (event.type === "error")
                    throw EngineError.fromShape(event.error);
                else if (event.type === "done") {
                    if (values.json === true)
                        process.stdout.write(JSON.stringify(AskResult.parse({answer: event.answer, citations: event.citations, stats: event.stats})) + "\n");
                    else {
                        process.stdout.write("\n");
                        const s = event.stats;
                        process.stderr.write(
                            `[${s.modelId} on ${s.backend}] ${s.promptTokens} prompt tokens, ${s.completionTokens} generated, ` +
                            `first token ${s.ttftMs.toFixed(0)} ms, ${s.tokensPerSecond.toFixed(1)} tok/s${event.cancelled ? " (cancelled)" : ""}\n`
                        );
                    }
                }
            }
        } finally {
            process.off("SIGINT", onSignal);
        }
        return 0;
    } finally {
        await engine.close();
    }
}
