import WebSocket from "ws";
import type {ServerMessage} from "../../main/contract/index.js";

/** A protocol-level client for `weft serve`'s socket, for tests that check the server itself. */
export class TestSocket {
    public readonly messages: ServerMessage[] = [];
    private waiters: Array<() => void> = [];

    private constructor(public readonly ws: WebSocket) {
        ws.on("message", (data) => {
            this.messages.push(JSON.parse(data.toString()) as ServerMessage);
            for (const wake of this.waiters.splice(0))
                wake();
        });
    }

    public static connect(url: string, headers: Record<string, string> = {}): Promise<TestSocket> {
        return new Promise((resolve, reject) => {
            const ws = new WebSocket(url, {headers});
            ws.once("open", () => resolve(new TestSocket(ws)));
            ws.once("unexpected-response", (_request, response) => reject(new Error(`HTTP ${response.statusCode}`)));
            ws.once("error", reject);
        });
    }

    public send(message: unknown): void {
        this.ws.send(JSON.stringify(message));
    }

    public async waitFor(predicate: (message: ServerMessage) => boolean, timeoutMs = 60_000): Promise<ServerMessage> {
        const deadline = Date.now() + timeoutMs;
        for (;;) {
            const found = this.messages.find(predicate);
            if (found != null)
                return found;

            if (Date.now() > deadline)
                throw new Error(`timed out waiting; got ${JSON.stringify(this.messages).slice(0, 500)}`);

            await new Promise<void>((resolve) => {
                this.waiters.push(resolve);
                setTimeout(resolve, 200);
            });
        }
    }

    public async call(id: number, method: string, input: unknown): Promise<ServerMessage> {
        this.send({type: "call", id, method, input});
        return this.waitFor((message) => message.id === id && (message.type === "result" || message.type === "failure"));
    }

    public eventsOf(id: number): Array<{type: string} & Record<string, unknown>> {
        return this.messages.filter((message) => message.type === "event" && message.id === id)
            .map((message) => (message as {event: {type: string}}).event as {type: string} & Record<string, unknown>);
    }

    public async waitForStreamEnd(id: number, timeoutMs = 60_000): Promise<void> {
        await this.waitFor((message) => message.id === id && (message.type === "failure" ||
            (message.type === "event" && ["done", "error"].includes((message.event as {type: string}).type))), timeoutMs);
    }

    public close(): void {
        this.ws.close();
    }
}
