import type {EngineActions, ModelsSlice, SliceCreator} from "./types.js";

export const createModelsSlice = (engine: () => EngineActions): SliceCreator<ModelsSlice> =>
    (_set, get) => ({
        models: [],
        modelsLoaded: false,
        activeModelId: null,
        modelBusy: false,
        selectModel: (id) => {
            if (id !== get().activeModelId)
                void engine().selectModel(id);
        },
        addModel: (path) => engine().addModel(path.trim()),
        refresh: () => void engine().refresh(),
        hardware: null,
        modelDetails: {},
        loadHardware: () => void engine().loadHardware()
    });
