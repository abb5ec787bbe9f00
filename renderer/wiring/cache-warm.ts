import type {CacheWarmEvent, CacheWarmStatus, StreamHandle} from "../../main/contract/index.js";
import type {CacheWarmActions} from "../store/index.js";
import {messageOf, type Wiring, type WiringContext} from "./context.js";

export type CacheWarmWiring = Wiring<CacheWarmActions> & {
    /** True while the event stream runs: its status is newer than the one inside a getStatus reply. */
    live(): boolean;
};

/** Background KV warming: follows the engine's status stream and pauses or resumes it. */
export function wireCacheWarm({client, store, notify}: WiringContext): CacheWarmWiring {
    let warmStream: StreamHandle | null = null;

    /** A lost connection ends the stream, and the next open starts another. */
    const watch = () => {
        warmStream?.cancel();
        const stream: StreamHandle = client.watchCacheWarm({}, (event: CacheWarmEvent) => {
            if (event.type === "status")
                store.setState({cacheWarm: event.status});
            else if (warmStream === stream)
                warmStream = null;
        });
        warmStream = stream;
    };

    const setWarmState = async (call: () => Promise<CacheWarmStatus>, what: string) => {
        store.setState({cacheWarmBusy: true});
        try {
            store.setState({cacheWarm: await call()});
        } catch (error) {
            notify(`Could not ${what} preparing the KV caches: ${messageOf(error)}`);
        } finally {
            store.setState({cacheWarmBusy: false});
        }
    };

    return {
        live: () => warmStream !== null,
        onOpen: watch,
        dispose: () => warmStream?.cancel(),
        actions: {
            pauseCacheWarm: () => setWarmState(() => client.pauseCacheWarm({}), "pause"),
            resumeCacheWarm: () => setWarmState(() => client.resumeCacheWarm({}), "resume")
        }
    };
}
