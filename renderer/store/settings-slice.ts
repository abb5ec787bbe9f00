import type {EngineActions, SettingsSlice, SliceCreator} from "./types.js";

export const createSettingsSlice = (engine: () => EngineActions): SliceCreator<SettingsSlice> =>
    () => ({
        settingsView: null,
        settingsSaving: false,
        changeSettings: (patch) => void engine().changeSettings(patch)
    });
