import type {SettingsView} from "../../main/contract/index.js";
import type {SettingsActions} from "../store/index.js";
import {messageOf, type Wiring, type WiringContext} from "./context.js";

/** The engine's saved settings; the strategy and ratio also become the composer's choice. */
export function wireSettings({client, store, notify}: WiringContext): Wiring<SettingsActions> {
    const apply = (view: SettingsView) => store.setState({
        settingsView: view,
        strategy: view.settings.strategy,
        ratio: view.settings.ratio
    });

    const loadSettings = async () => {
        try {
            apply(await client.getSettings({}));
        } catch (error) {
            notify(`Could not load the settings: ${messageOf(error)}`);
        }
    };

    return {
        onOpen: () => void loadSettings(),
        actions: {
            loadSettings,
            async changeSettings(patch) {
                store.setState({settingsSaving: true});
                try {
                    apply(await client.changeSettings(patch));
                } catch (error) {
                    notify(`Could not save the settings: ${messageOf(error)}`);
                    await loadSettings();
                } finally {
                    store.setState({settingsSaving: false});
                }
            }
        }
    };
}
