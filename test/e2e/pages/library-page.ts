// Page object for the library panel: adding folders, watching them index, their rows and problems.
import type {Locator, Page} from "playwright-core";

export type IngestEnd = {state: string; text: string};
export type ListedProblem = {path: string; text: string};

/** A CSS attribute value in double quotes (JSON escapes quotes and backslashes the way CSS reads them). */
const cssString = (value: string): string => JSON.stringify(value);

export class LibraryPage {
    public readonly toggle: Locator;
    public readonly panel: Locator;
    public readonly pathInput: Locator;
    public readonly addButton: Locator;
    public readonly progress: Locator;
    public readonly cancelButton: Locator;
    public readonly folderRows: Locator;
    public readonly ingestError: Locator;
    public readonly libraryError: Locator;
    public readonly empty: Locator;
    /** Background KV cache preparation (shown while it runs or is paused). */
    public readonly cacheWarm: Locator;
    public readonly cacheWarmToggle: Locator;

    public constructor(public readonly page: Page) {
        this.toggle = page.getByTestId("library-toggle");
        this.panel = page.getByTestId("library-panel");
        this.pathInput = page.getByTestId("folder-path-input");
        this.addButton = page.getByTestId("add-folder");
        this.progress = page.getByTestId("ingest-progress");
        this.cancelButton = page.getByTestId("cancel-ingest");
        this.folderRows = page.getByTestId("folder-row");
        this.ingestError = page.getByTestId("ingest-error");
        this.libraryError = page.getByTestId("library-error");
        this.empty = page.getByTestId("library-empty");
        this.cacheWarm = page.getByTestId("cache-warm");
        this.cacheWarmToggle = page.getByTestId("cache-warm-toggle");
    }

    /** The KV cache preparation section in one state ("running" or "paused"). */
    public cacheWarmIn(state: "running" | "paused"): Locator {
        return this.page.locator(`[data-testid="cache-warm"][data-state="${state}"]`);
    }

    public async isOpen(): Promise<boolean> {
        return (await this.panel.count()) > 0;
    }

    /** Opens the panel with its header button unless it is open already. */
    public async open(): Promise<void> {
        if (!(await this.isOpen()))
            await this.toggle.click();
        await this.panel.waitFor();
    }

    /** Ctrl+L, as a user would press it (anywhere in the page). */
    public async pressShortcut(): Promise<void> {
        await this.page.keyboard.press("Control+l");
    }

    /** The run number of the current (or last) ingest on screen; 0 when none is shown. */
    public async currentRun(): Promise<number> {
        if ((await this.progress.count()) === 0)
            return 0;
        return Number(await this.progress.getAttribute("data-run"));
    }

    /** Types the path and presses Enter; returns the run number to pass to waitForIngestEnd. */
    public async addFolder(folderPath: string): Promise<number> {
        const before = await this.currentRun();
        await this.pathInput.fill(folderPath);
        await this.pathInput.press("Enter");
        return before;
    }

    /** Clicks the folder's Re-index button; returns the run number to pass to waitForIngestEnd. */
    public async reindex(folderPath: string): Promise<number> {
        const before = await this.currentRun();
        await this.row(folderPath).getByTestId("reindex-folder").click();
        return before;
    }

    /**
     * Waits for an ingest other than run `after` (the one on screen before it started) to end (done, cancelled
     * or error) and returns how. A locator, not waitForFunction: the page's CSP forbids evaluating strings.
     */
    public async waitForIngestEnd(after: number, timeoutMs = 60_000): Promise<IngestEnd> {
        const ended = this.page.locator(
            `[data-testid="ingest-progress"]:not([data-run="${after}"]):not([data-state="running"])`
        );
        await ended.waitFor({timeout: timeoutMs});
        return {
            state: (await ended.getAttribute("data-state")) ?? "",
            text: ((await ended.textContent()) ?? "").trim()
        };
    }

    public row(folderPath: string): Locator {
        return this.page.locator(`[data-testid="folder-row"][data-path=${cssString(folderPath)}]`);
    }

    public async files(folderPath: string): Promise<number> {
        return Number(await this.row(folderPath).getAttribute("data-files"));
    }

    public async chunks(folderPath: string): Promise<number> {
        return Number(await this.row(folderPath).getAttribute("data-chunks"));
    }

    /** Expands the folder's errors or skipped list and returns each entry's path and visible text. */
    public async problems(folderPath: string, kind: "errors" | "skipped"): Promise<ListedProblem[]> {
        const list = this.row(folderPath).getByTestId(kind === "errors" ? "folder-errors" : "folder-skipped");
        if ((await list.count()) === 0)
            return [];
        if ((await list.getAttribute("open")) === null)
            await list.locator("summary").click();
        await list.locator("li").first().waitFor();
        return list.locator("li").evaluateAll((items) => items.map((item) => ({
            path: item.getAttribute("data-path") ?? "",
            text: (item.textContent ?? "").trim()
        })));
    }

    /** Remove, then the confirmation's Remove; waits until the row is gone. */
    public async remove(folderPath: string): Promise<void> {
        const row = this.row(folderPath);
        await row.getByTestId("remove-folder").click();
        await row.getByTestId("confirm-remove").click();
        await row.waitFor({state: "detached"});
    }
}
