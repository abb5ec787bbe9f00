import type {CacheSlice, EngineActions, SliceCreator} from "./types.js";

export const createCacheSlice = (engine: () => EngineActions): SliceCreator<CacheSlice> =>
    () => ({
        cacheOverview: null,
        loadCacheOverview: () => void engine().loadCacheOverview()
    });
