import {
    type EngineApi, EngineError, type HostEvent, isTerminalEvent, rpcNames, ServerMessage, type StreamName, streamNames
} from "../contract/index.js";
import {AsyncQueue} from "../engine/async-queue.js";
import type {HostCommand, HostControlMessage} from "./engine-host.js";

/** The child as the main process sees it: Electron's UtilityProcess, or (in tests) an adapter over a Node child. */
export interface EngineChild {
    postMessage(message: unknown): void;
    onMessage(listener: (message: unknown) => void): void;
    /** Called once when the process has gone, with why (an exit code, a signal, Electron's crash reason). */
    onExit(listener: (reason: string) => void): void;
    kill(): void;
}

export type EngineProcessOptions = {
    spawn(): EngineChild;
    /** Waits before restarting after each crash in a row; the last one repeats. */
    restartDelaysMs?: number[];
    /** How long `close` waits for the engine to let go of the model before killing it. */
    shutdownTimeoutMs?: number;
    log?(line: string): void;
};

type Pending = {resolve(output: unknown): void; reject(error: EngineError): void};
type OpenStream = {push(event: unknown): void};

/**
 * The engine behind a process boundary, as an EngineApi: the IPC handlers use it exactly as they would use the
 * engine itself. When the process dies, calls in flight reject and streams in flight end with an error that gives
 * the reason; the process is started again and `watchHost` streams tell the window (restarting, then running).
 * Nothing is lost: the engine keeps its state in the data folder, written atomically.
 */
export class EngineProcess {
    public readonly api: EngineApi;
    private child: EngineChild | null = null;
    private ready: Promise<void> = Promise.resolve();
    private nextId = 1;
    private readonly calls = new Map<number, Pending>();
    private readonly streams = new Map<number, OpenStream>();
    private readonly hostWatchers = new Set<(event: HostEvent) => void>();
    private crashesInARow = 0;
    private closed = false;
    private state: HostEvent & {type: "state"} = {type: "state", state: "restarting", reason: "starting"};

    public constructor(private readonly options: EngineProcessOptions, extra: Partial<EngineApi> = {}) {
        const api: Record<string, unknown> = {};
        for (const name of rpcNames)
            api[name] = (input: unknown) => this.call(name, input);
        for (const name of streamNames)
            api[name] = (input: unknown, signal: AbortSignal) => this.stream(name, input, signal);
        api.watchHost = (_input: unknown, signal: AbortSignal) => this.watchHost(signal);
        this.api = {...api, ...extra} as EngineApi;
    }

    /** Starts the engine process; resolves once it answers (rejects when it cannot start at all). */
    public start(): Promise<void> {
        const child = this.options.spawn();
        this.child = child;
        this.ready = new Promise<void>((resolve, reject) => {
            child.onMessage((message) => {
                const control = message as HostControlMessage;
                if (control?.type === "ready") {
                    this.crashesInARow = 0;
                    this.setState({type: "state", state: "running"});
                    resolve();
                } else if (control?.type === "startFailed") {
                    reject(new EngineError("internal", `the engine could not start: ${control.message}`));
                } else
                    this.receive(message);
            });
            child.onExit((reason) => {
                reject(new EngineError("internal", `the engine stopped before it was ready (${reason})`));
                this.onExit(child, reason);
            });
        });
        this.ready.catch(() => {});
        return this.ready;
    }

    /** Tells every `watchHost` stream that the models changed (a model added from the menu). */
    public notifyModelsChanged(): void {
        for (const watcher of this.hostWatchers)
            watcher({type: "modelsChanged"});
    }

    /** Asks the engine to close (unloading the model) and waits for it, killing it after the timeout. */
    public async close(): Promise<void> {
        this.closed = true;
        const child = this.child;
        if (child == null)
            return;
        const exited = new Promise<void>((resolve) => child.onExit(() => resolve()));
        child.postMessage({type: "shutdown"} satisfies HostCommand);
        const timeout = new Promise<"timeout">((resolve) => setTimeout(() => resolve("timeout"), this.options.shutdownTimeoutMs ?? 5000).unref());
        if (await Promise.race([exited, timeout]) === "timeout")
            child.kill();
        for (const watcher of this.hostWatchers)
            watcher({type: "done"});
    }

    private setState(state: HostEvent & {type: "state"}): void {
        this.state = state;
        for (const watcher of this.hostWatchers)
            watcher(state);
    }

    private onExit(child: EngineChild, reason: string): void {
        if (this.child !== child)
            return;
        this.child = null;
        const message = `the engine stopped (${reason})`;
        const calls = [...this.calls.values()];
        const streams = [...this.streams.values()];
        this.calls.clear();
        this.streams.clear();
        for (const call of calls)
            call.reject(new EngineError("internal", message));
        for (const stream of streams)
            stream.push({type: "error", error: {code: "internal", message: `${message}; it is restarting`}});
        if (this.closed)
            return;

        this.options.log?.(`${message}; restarting`);
        this.setState({type: "state", state: "restarting", reason});
        const delays = this.options.restartDelaysMs ?? [250, 1000, 5000];
        const delay = delays[Math.min(this.crashesInARow, delays.length - 1)] ?? 5000;
        this.crashesInARow++;
        // Calls made meanwhile wait for the new process.
        let resolveRestart!: () => void;
        const restarted = new Promise<void>((resolve) => {
            resolveRestart = resolve;
        });
        this.ready = restarted;
        setTimeout(() => {
            if (this.closed)
                return;
            this.start().then(resolveRestart, (error: unknown) => {
                this.options.log?.(`restarting the engine failed: ${(error as Error).message}`);
                resolveRestart();
            });
        }, delay);
    }

    private receive(raw: unknown): void {
        const parsed = ServerMessage.safeParse(raw);
        if (!parsed.success) {
            this.options.log?.("ignored an invalid message from the engine process");
            return;
        }
        const message = parsed.data;
        if (message.type === "result") {
            this.calls.get(message.id)?.resolve(message.output);
            this.calls.delete(message.id);
        } else if (message.type === "failure") {
            const call = this.calls.get(message.id);
            this.calls.delete(message.id);
            if (call !== undefined)
                call.reject(EngineError.fromShape(message.error));
            else {
                this.streams.get(message.id)?.push({type: "error", error: message.error});
                this.streams.delete(message.id);
            }
        } else {
            const stream = this.streams.get(message.id);
            stream?.push(message.event);
            if (isTerminalEvent(message.event as {type: string}))
                this.streams.delete(message.id);
        }
    }

    private async send(message: unknown): Promise<void> {
        await this.ready;
        if (this.child == null)
            throw new EngineError("internal", "the engine is not running");
        this.child.postMessage(message);
    }

    private call(method: string, input: unknown): Promise<unknown> {
        const id = this.nextId++;
        return new Promise<unknown>((resolve, reject) => {
            this.calls.set(id, {resolve, reject});
            this.send({type: "call", id, method, input}).catch((error: unknown) => {
                this.calls.delete(id);
                reject(error);
            });
        });
    }

    private async* stream(method: StreamName, input: unknown, signal: AbortSignal): AsyncGenerator<unknown> {
        const id = this.nextId++;
        const queue = new AsyncQueue<unknown>();
        this.streams.set(id, {push: (event) => queue.push(event)});
        const onAbort = () => {
            if (this.streams.has(id))
                this.child?.postMessage({type: "cancel", id});
        };
        signal.addEventListener("abort", onAbort, {once: true});
        try {
            await this.send({type: "stream", id, method, input});
            if (signal.aborted)
                onAbort();
            yield* queue.drain((event) => isTerminalEvent(event as {type: string}));
        } finally {
            signal.removeEventListener("abort", onAbort);
            this.streams.delete(id);
        }
    }

    private async* watchHost(signal: AbortSignal): AsyncGenerator<HostEvent> {
        const queue = new AsyncQueue<HostEvent>();
        queue.push(this.state);
        const watcher = (event: HostEvent) => queue.push(event);
        const onAbort = () => watcher({type: "done"});
        this.hostWatchers.add(watcher);
        signal.addEventListener("abort", onAbort, {once: true});
        try {
            yield* queue.drain((event) => event.type === "done");
        } finally {
            this.hostWatchers.delete(watcher);
            signal.removeEventListener("abort", onAbort);
        }
    }
}
