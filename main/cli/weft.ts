import {EngineError, toErrorShape} from "../contract/index.js";
import packageJson from "../../package.json" with {type: "json"};
import {UsageError} from "./args.js";
import {askCommand, askUsage} from "./ask.js";
import {cacheCommand, cacheUsage} from "./cache.js";
import {ingestCommand, ingestUsage} from "./ingest.js";
import {modelsCommand, modelsUsage} from "./models.js";
import {serveCommand, serveUsage} from "./serve.js";

const usage = `Weft ${packageJson.version}: chat with a folder of documents on your own machine.

Usage:
  ${ingestUsage}
  ${askUsage}
  ${modelsUsage.split("\n").join("\n  ")}
  ${cacheUsage.split("\n").join("\n  ")}
  ${serveUsage}

Every command takes --data DIR (or WEFT_DATA) to choose the library folder, and --threads N (or WEFT_THREADS).`;

const commands: Record<string, (argv: string[]) => Promise<number>> = {
    ingest: ingestCommand,
    ask: askCommand,
    models: modelsCommand,
    cache: cacheCommand,
    serve: serveCommand
};

async function main(argv: string[]): Promise<number> {
    const [name, ...rest] = argv;
    if (name == null || name === "--help" || name === "-h" || name === "help") {
        console.log(usage);
        return name == null ? 2 : 0;
    }

    if (name === "--version" || name === "-v") {
        console.log(packageJson.version);
        return 0;
    }

    const command = commands[name];
    if (command == null)
        throw new UsageError(`unknown command "${name}". Commands: ${Object.keys(commands).join(", ")}. See \`weft --help\`.`);

    return command(rest);
}

const json = process.argv.includes("--json");
try {
    process.exitCode = await main(process.argv.slice(2));
} catch (error) {
    if (error instanceof UsageError) {
        console.error(`weft: ${error.message}`);
        process.exitCode = 2;
    } else {
        const shape = toErrorShape(error);
        if (json)
            console.log(JSON.stringify({error: shape}));

        console.error(`weft: ${shape.message}${error instanceof EngineError ? "" : ` (${shape.code})`}`);
        process.exitCode = 1;
    }
}
// node-llama-cpp keeps native handles alive after dispose; the command is finished, so leave now.
process.exit(process.exitCode ?? 0);
