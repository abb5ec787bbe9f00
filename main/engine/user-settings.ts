import {restartSettings, type SettingsView, UserSettings} from "../contract/index.js";
import type {Settings} from "./settings.js";

/** The Settings view's fields of the saved settings, and which of them wait for a restart to apply. */
export function settingsView(saved: Settings, startedWith: Settings, dataDir: string): SettingsView {
    const pendingRestart = restartSettings.filter((key) => saved[key] !== startedWith[key]);
    return {settings: UserSettings.parse(saved), dataDir, pendingRestart};
}

/**
 * Threads for this run: an explicit count (CLI flag, test) first, then WEFT_THREADS, then the saved setting; null
 * leaves the choice to resolveThreads (the core count).
 */
export function startupThreads(explicit: number | undefined, saved: Settings, env: NodeJS.ProcessEnv = process.env): number | undefined {
    if (explicit != null)
        return explicit;
    if (Number.parseInt(env.WEFT_THREADS ?? "", 10) > 0)
        return undefined;
    return saved.threads ?? undefined;
}
