import {EngineError, type EngineClient} from "../../main/contract/index.js";
import type {AppStore} from "../store/index.js";
import type {ConnectionSource} from "../transport/connection.js";

/** What every slice's wiring gets: the typed client, the store it updates, the connection, and the banner. */
export type WiringContext = {
    client: EngineClient;
    store: AppStore;
    connection: ConnectionSource;
    /** Shows a dismissible banner for a failed request that is not tied to one view. */
    notify(message: string): void;
};

/** A slice's wiring: the engine actions it implements, plus what it does when the connection opens and when the app closes. */
export type Wiring<Actions> = {
    actions: Actions;
    onOpen?(): void;
    dispose?(): void;
};

export function messageOf(error: unknown): string {
    if (error instanceof EngineError || error instanceof Error)
        return error.message;
    return String(error);
}
