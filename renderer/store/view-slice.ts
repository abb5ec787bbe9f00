import type {SliceCreator, ViewSlice} from "./types.js";

export const createViewSlice = (): SliceCreator<ViewSlice> =>
    (set) => ({
        view: "chat",
        setView: (view) => set({view})
    });
