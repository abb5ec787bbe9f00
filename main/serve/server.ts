import {randomBytes, timingSafeEqual} from "node:crypto";
import {createServer, type IncomingMessage} from "node:http";
import type {AddressInfo} from "node:net";
import {WebSocketServer} from "ws";
import {apiSocketPath, type EngineApi} from "../contract/index.js";
import {attachSocketSession} from "./socket-session.js";
import {serveStatic} from "./static-files.js";

export type ServeOptions = {
    engine: EngineApi;
    rendererDir: string;
    /** 0 picks a free port. */
    port: number;
    token?: string;
    log?: (line: string) => void;
};

export type RunningServer = {url: string, port: number, token: string, close(): Promise<void>};

const host = "127.0.0.1";

/**
 * Serves the renderer and the engine socket on loopback only. The socket needs the per-run token and a
 * same-origin (or no) Origin, and every request needs a loopback Host, so neither another local web page
 * nor a DNS-rebound site can drive the engine.
 */
export async function startServer(options: ServeOptions): Promise<RunningServer> {
    const token = options.token ?? randomBytes(24).toString("hex");
    const log = options.log ?? (() => {});
    const tokenBuffer = Buffer.from(token);
    let port = options.port;

    const allowedHosts = () => new Set([`${host}:${port}`, `localhost:${port}`]);
    const hostAllowed = (request: IncomingMessage) => allowedHosts().has(request.headers.host ?? "");
    const originAllowed = (request: IncomingMessage) => {
        const origin = request.headers.origin;
        return origin == null || [...allowedHosts()].some((allowed) => origin === `http://${allowed}`);
    };
    const tokenValid = (request: IncomingMessage) => {
        const given = Buffer.from(new URL(request.url ?? "/", "http://x").searchParams.get("token") ?? "");
        return given.length === tokenBuffer.length && timingSafeEqual(given, tokenBuffer);
    };

    const server = createServer((request, response) => {
        if (!hostAllowed(request)) {
            response.writeHead(421, {"Content-Type": "text/plain"}).end("wrong host");
            return;
        }

        if (request.method !== "GET" && request.method !== "HEAD") {
            response.writeHead(405, {Allow: "GET, HEAD"}).end();
            return;
        }

        const {pathname} = new URL(request.url ?? "/", "http://x");
        if (pathname === apiSocketPath) {
            // A plain request to the socket path tells a wrong token apart from a server that is down.
            response.writeHead(tokenValid(request) ? 426 : 401, {"Content-Type": "text/plain"})
                .end(tokenValid(request) ? "upgrade to a WebSocket" : "missing or wrong token");
            return;
        }

        void serveStatic(options.rendererDir, pathname, response).catch((error) => {
            log(`static file error: ${(error as Error).message}`);
            if (!response.headersSent)
                response.writeHead(500).end();
        });
    });

    const sockets = new WebSocketServer({noServer: true, maxPayload: 1024 * 1024});
    server.on("upgrade", (request, socket, head) => {
        const {pathname} = new URL(request.url ?? "/", "http://x");
        const refuse = (status: string) => {
            socket.end(`HTTP/1.1 ${status}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
        };
        if (pathname !== apiSocketPath)
            return refuse("404 Not Found");

        if (!hostAllowed(request) || !originAllowed(request))
            return refuse("403 Forbidden");

        if (!tokenValid(request))
            return refuse("401 Unauthorized");

        sockets.handleUpgrade(request, socket, head, (webSocket) => attachSocketSession(webSocket, options.engine, log));
    });

    await new Promise<void>((resolve, reject) => {
        server.once("error", reject);
        server.listen(options.port, host, () => {
            server.off("error", reject);
            resolve();
        });
    });
    port = (server.address() as AddressInfo).port;

    return {
        url: `http://${host}:${port}/#token=${token}`,
        port,
        token,
        async close() {
            for (const client of sockets.clients)
                client.terminate();

            sockets.close();
            await new Promise<void>((resolve) => server.close(() => resolve()));
        }
    };
}
