import {EngineError} from "../contract/index.js";
import {findRendererDir} from "../serve/static-files.js";
import {startServer} from "../serve/server.js";
import {commonOptions, parseCommandArgs, UsageError} from "./args.js";
import {openEngineFromFlags} from "./open-engine.js";

export const serveUsage = "weft serve [--port N] [--data DIR] [--threads N] [--gpu auto|cpu|cuda|vulkan|metal]";

export async function serveCommand(argv: string[]): Promise<number> {
    const {values, positionals} = parseCommandArgs(argv, {...commonOptions, port: {type: "string"}});
    if (values.help) {
        console.log(serveUsage);
        return 0;
    }

    if (positionals.length > 0)
        throw new UsageError(`unexpected argument "${positionals[0]}": ${serveUsage}`);

    const port = values.port != null ? Number(values.port) : 7391;
    if (!Number.isInteger(port) || port < 0 || port > 65535)
        throw new UsageError(`--port must be 0-65535, got "${values.port}"`);

    const rendererDir = findRendererDir();
    if (rendererDir == null)
        throw new EngineError("internal", "the renderer is not built (dist/renderer is missing): run `npm run build`");

    const engine = await openEngineFromFlags(values);
    const log = (line: string) => process.stderr.write(`[weft] ${line}\n`);
    // A failing request must never take the server down with it.
    process.on("unhandledRejection", (reason) => log(`unhandled rejection: ${String((reason as Error)?.stack ?? reason)}`));

    const server = await startServer({engine, rendererDir, port, log});
    console.log(`Weft is serving at ${server.url}`);
    console.log("Open that address in a browser on this machine; it carries this run's access token. Ctrl+C stops.");

    void engine.maintainLibrary(log).catch((error) => log(`library maintenance stopped: ${(error as Error).message}`));
    void engine.warmUp().then(
        async () => log(`engine ready (${(await engine.getStatus()).backend ?? "?"} backend)`),
        (error) => log(`warm-up failed, questions will retry: ${(error as Error).message}`)
    ).finally(() => {
        // Then the chunk KV caches of the library, in the background (after every ingest and model change too).
        engine.startCacheWarming(log);
    });

    await new Promise<void>((resolve) => {
        const stop = () => resolve();
        process.once("SIGINT", stop);
        process.once("SIGTERM", stop);
    });
    log("stopping");
    await server.close();
    await engine.close();
    return 0;
}
