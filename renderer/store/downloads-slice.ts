import type {DownloadsSlice, EngineActions, SliceCreator} from "./types.js";

export const createDownloadsSlice = (engine: () => EngineActions): SliceCreator<DownloadsSlice> =>
    (_set, get) => ({
        downloads: [],
        startDownload: (source) => {
            const trimmed = source.trim();
            if (trimmed === "" || get().downloads.some((download) => download.source === trimmed && download.state === "running"))
                return;
            engine().startDownload(trimmed);
        },
        cancelDownload: (source) => engine().cancelDownload(source)
    });
