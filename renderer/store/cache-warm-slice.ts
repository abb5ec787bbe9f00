import type {CacheWarmSlice, EngineActions, SliceCreator} from "./types.js";

export const createCacheWarmSlice = (engine: () => EngineActions): SliceCreator<CacheWarmSlice> =>
    (_set, get) => ({
        cacheWarm: null,
        cacheWarmBusy: false,
        pauseCacheWarm: () => {
            if (get().cacheWarm?.state === "running" && !get().cacheWarmBusy)
                void engine().pauseCacheWarm();
        },
        resumeCacheWarm: () => {
            if (get().cacheWarm?.state === "paused" && !get().cacheWarmBusy)
                void engine().resumeCacheWarm();
        }
    });
