import os from "node:os";
import path from "node:path";

export const appName = "Weft";

/**
 * The folder Electron's `app.getPath("userData")` gives for an app named "Weft", so the CLI, `serve`
 * and the desktop app share one library.
 */
export function defaultDataDir(platform: NodeJS.Platform = process.platform, env: NodeJS.ProcessEnv = process.env): string {
    const home = os.homedir();
    if (platform === "win32")
        return path.join(env.APPDATA ?? path.join(home, "AppData", "Roaming"), appName);

    if (platform === "darwin")
        return path.join(home, "Library", "Application Support", appName);

    return path.join(env.XDG_CONFIG_HOME ?? path.join(home, ".config"), appName);
}

/** `--data` wins over `WEFT_DATA`, which wins over the platform default. */
export function resolveDataDir(flag: string | undefined, env: NodeJS.ProcessEnv = process.env): string {
    const chosen = flag ?? env.WEFT_DATA;
    return chosen != null && chosen !== "" ? path.resolve(chosen) : defaultDataDir(process.platform, env);
}
