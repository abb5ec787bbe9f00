import {randomBytes, timingSafeEqual} from "node:crypto";
import {createServer, type IncomingMessage} from "node:http";
import type {AddressInfo} from "node:net";
import {WebSocketServer} from "ws";
import {apiSocketPath, type EngineApi} from "../contract/index.js";
import {parseRequestTarget} from "./request-path.js";
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
/** The largest message a client may send; the protocol's messages are small JSON. */
export const maxMessageBytes = 1024 * 1024;

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
    const tokenValid = (searchParams: URLSearchParams) => {
        const given = Buffer.from(searchParams.get("token") ?? "");
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

        const target = parseRequestTarget(request.url);
        if (target == null) {
            response.writeHead(400, {"Content-Type": "text/plain"}).end("bad request path");
            return;
        }

        if (target.pathname === apiSocketPath) {
            // A plain request to the socket path tells a wrong token apart from a server that is down.
            const valid = tokenValid(target.searchParams);
            response.writeHead(valid ? 426 : 401, {"Content-Type": "text/plain"})
                .end(valid ? "upgrade to a WebSocket" : "missing or wrong token");
            return;
        }

        void serveStatic(options.rendererDir, target.pathname, response).catch((error) => {
            log(`static file error: ${(error as Error).message}`);
            if (!response.headersSent)
                response.writeHead(500).end();
        });
    });

    // Malformed requests and resets end that connection only.
    server.on("clientError", (error: NodeJS.ErrnoException, socket) => {
        socket.on("error", () => {});
        if (socket.writable && error.code !== "ECONNRESET")
            socket.end("HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n");
        else
            socket.destroy();
    });
    server.on("connection", (socket) => socket.on("error", (error) => log(`connection error: ${error.message}`)));

    // ws closes a socket whose message is too big with 1009 and one with invalid UTF-8 with 1007, then emits
    // "error" on it; attachSocketSession handles that event.
    const sockets = new WebSocketServer({noServer: true, maxPayload: maxMessageBytes});
    sockets.on("error", (error) => log(`socket server error: ${error.message}`));
    server.on("upgrade", (request, socket, head) => {
        socket.on("error", (error) => log(`upgrade socket error: ${error.message}`));
        const refuse = (status: string) => {
            socket.end(`HTTP/1.1 ${status}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
        };
        const target = parseRequestTarget(request.url);
        if (target == null)
            return refuse("400 Bad Request");

        if (target.pathname !== apiSocketPath)
            return refuse("404 Not Found");

        if (!hostAllowed(request) || !originAllowed(request))
            return refuse("403 Forbidden");

        if (!tokenValid(target.searchParams))
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
