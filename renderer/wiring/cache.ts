import type {CacheActions} from "../store/index.js";
import {messageOf, type Wiring, type WiringContext} from "./context.js";

/** The Cache view's totals, read when the view opens and after every answer. */
export function wireCache({client, store, notify}: WiringContext): Wiring<CacheActions> {
    return {
        actions: {
            async loadCacheOverview() {
                try {
                    store.setState({cacheOverview: await client.getCacheOverview({})});
                } catch (error) {
                    notify(`Could not read the cache totals: ${messageOf(error)}`);
                }
            }
        }
    };
}
