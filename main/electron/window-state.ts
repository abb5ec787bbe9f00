import path from "node:path";
import {z} from "zod";
import {readJsonOr, writeJsonAtomic} from "../engine/json-file.js";

export type Rect = {x: number; y: number; width: number; height: number};

const SavedWindow = z.object({
    x: z.number().int().optional(),
    y: z.number().int().optional(),
    width: z.number().int().min(200).max(100_000),
    height: z.number().int().min(200).max(100_000),
    maximized: z.boolean().default(false)
});
export type SavedWindow = z.infer<typeof SavedWindow>;

export const defaultWindow: SavedWindow = {width: 1180, height: 820, maximized: false};

export function windowStatePath(userData: string): string {
    return path.join(userData, "window-state.json");
}

/**
 * Where the window opens: as it was, unless the display it was on is gone (then centred by the system, same
 * size, shrunk to fit the largest work area). A damaged file gives the defaults (readJsonOr sets it aside).
 */
export async function loadWindowState(filePath: string, workAreas: Rect[]): Promise<SavedWindow> {
    return placeOnScreen(await readJsonOr(filePath, SavedWindow, defaultWindow), workAreas);
}

export function placeOnScreen(saved: SavedWindow, workAreas: Rect[]): SavedWindow {
    const largest = workAreas.reduce<Rect | null>((best, area) => (best === null || area.width * area.height > best.width * best.height ? area : best), null);
    const width = largest === null ? saved.width : Math.min(saved.width, largest.width);
    const height = largest === null ? saved.height : Math.min(saved.height, largest.height);
    const {x, y} = saved;
    // Visible enough to grab: the title bar's first 100×40 pixels lie on some display.
    const reachable = x !== undefined && y !== undefined && workAreas.some((area) =>
        x + 100 > area.x && x < area.x + area.width - 40 && y >= area.y && y < area.y + area.height - 40);
    return reachable ? {x, y, width, height, maximized: saved.maximized} : {width, height, maximized: saved.maximized};
}

export async function saveWindowState(filePath: string, state: SavedWindow): Promise<void> {
    await writeJsonAtomic(filePath, SavedWindow.parse(state));
}
