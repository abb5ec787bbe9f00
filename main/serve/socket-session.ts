import type {WebSocket} from "ws";
import type {EngineApi, ServerMessage} from "../contract/index.js";
import {createMessageSession} from "./message-session.js";

/**
 * One browser connection: the message protocol over a WebSocket. Closing the connection cancels its streams, so a
 * closed tab never leaves the model generating.
 */
export function attachSocketSession(socket: WebSocket, engine: EngineApi, log: (line: string) => void): void {
    const send = (message: ServerMessage) => {
        if (socket.readyState === socket.OPEN)
            socket.send(JSON.stringify(message));
    };
    const session = createMessageSession(engine, send, log);

    socket.on("message", (data, isBinary) => {
        if (isBinary) {
            log("dropped a malformed message: binary messages are not part of the protocol");
            send({type: "failure", id: -1, error: {code: "bad_request", message: "malformed message: binary messages are not part of the protocol"}});
            return;
        }

        let json: unknown;
        try {
            json = JSON.parse(data.toString());
        } catch (error) {
            log(`dropped a malformed message: ${(error as Error).message}`);
            send({type: "failure", id: -1, error: {code: "bad_request", message: `malformed message: ${(error as Error).message}`}});
            return;
        }
        session.receive(json);
    });

    // Protocol errors (too big: 1009, invalid UTF-8: 1007, bad frames: 1002) close this socket only.
    socket.on("error", (error) => log(`socket closed on a protocol error: ${error.message}`));

    socket.on("close", () => session.close());
}
