// A local HTTP server on 127.0.0.1 that serves one file with Range support: the first `fastBytes` at full speed,
// the rest slowly until `unthrottle()`. node-llama-cpp's downloader (ipull) keeps progress in 5 MiB chunks, so a
// download cancelled after its first chunk resumes from there; the server records each request's range to show it.
import {createServer, type Server} from "node:http";
import type {AddressInfo} from "node:net";

export type SlowFileServer = {
    url: string;
    /** Each GET's byte range, in order; `ranged` is false for a plain GET (the downloader's size probe). */
    requests: {start: number; end: number; ranged: boolean}[];
    unthrottle(): void;
    close(): Promise<void>;
};

export async function startSlowFileServer(data: Buffer, urlName: string, options: {fastBytes: number; slowBytesPerTick: number; tickMs: number}): Promise<SlowFileServer> {
    const requests: {start: number; end: number; ranged: boolean}[] = [];
    let throttled = true;
    const server: Server = createServer((request, response) => {
        if (request.url !== `/${urlName}`) {
            response.writeHead(404).end();
            return;
        }
        const headers = {"Content-Type": "application/octet-stream", "Accept-Ranges": "bytes"};
        if (request.method === "HEAD") {
            response.writeHead(200, {...headers, "Content-Length": data.byteLength}).end();
            return;
        }
        const range = /^bytes=(\d+)-(\d*)$/.exec(request.headers.range ?? "");
        const start = range === null ? 0 : Number(range[1]);
        const end = range === null || range[2] === "" ? data.byteLength - 1 : Math.min(Number(range[2]), data.byteLength - 1);
        requests.push({start, end, ranged: range !== null});
        response.writeHead(range === null ? 200 : 206, {
            ...headers,
            "Content-Length": end - start + 1,
            ...(range === null ? {} : {"Content-Range": `bytes ${start}-${end}/${data.byteLength}`})
        });
        let at = start;
        const timer = setInterval(() => {
            if (response.destroyed) {
                clearInterval(timer);
                return;
            }
            const step = throttled && at >= options.fastBytes ? options.slowBytesPerTick : 1024 * 1024;
            const next = Math.min(end + 1, at + step);
            response.write(data.subarray(at, next));
            at = next;
            if (at > end) {
                clearInterval(timer);
                response.end();
            }
        }, options.tickMs);
        request.on("close", () => clearInterval(timer));
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const {port} = server.address() as AddressInfo;
    return {
        url: `http://127.0.0.1:${port}/${urlName}`,
        requests,
        unthrottle: () => {
            throttled = false;
        },
        close: () => new Promise<void>((resolve) => {
            server.closeAllConnections();
            server.close(() => resolve());
        })
    };
}
