// Page object for the app around the chat: views, conversations, sources, settings, cache and models.
// Everything is found by role and accessible name, as a screen reader user would find it.
import type {Locator, Page} from "playwright-core";

export class AppPage {
    public constructor(public readonly page: Page) {}

    // Views
    public viewButton(name: "Chat" | "Models" | "Cache" | "Settings"): Locator {
        return this.page.getByRole("navigation", {name: "Views"}).getByRole("button", {name, exact: true});
    }

    public async openView(name: "Chat" | "Models" | "Cache" | "Settings"): Promise<void> {
        await this.viewButton(name).click();
        if (name !== "Chat")
            await this.page.getByRole("heading", {level: 1, name, exact: true}).waitFor();
    }

    // Conversations
    public get conversations(): Locator {
        return this.page.getByRole("navigation", {name: "Conversations"});
    }

    public conversation(title: string): Locator {
        return this.conversations.getByRole("button", {name: title, exact: true});
    }

    public async conversationTitles(): Promise<string[]> {
        return this.conversations.getByRole("list", {name: "Saved conversations"}).getByRole("listitem")
            .locator("button.conversation-open").allTextContents();
    }

    public async rename(title: string, to: string): Promise<void> {
        await this.conversations.getByRole("button", {name: `Rename ${title}`}).click();
        const input = this.conversations.getByRole("textbox", {name: "Conversation title"});
        await input.fill(to);
        await input.press("Enter");
        await this.conversation(to).waitFor();
    }

    public async remove(title: string): Promise<void> {
        await this.conversations.getByRole("button", {name: `Delete ${title}`, exact: true}).click();
        await this.conversations.getByRole("button", {name: `Confirm deleting ${title}`}).click();
        await this.conversation(title).waitFor({state: "detached"});
    }

    public currentConversation(): Locator {
        return this.conversations.locator('button[aria-current="true"]');
    }

    // Answers
    public strip(turn: Locator): Locator {
        return turn.getByRole("region", {name: "Answer summary"});
    }

    public async openDetails(turn: Locator): Promise<void> {
        await this.strip(turn).getByRole("button", {name: "Details"}).click();
        await turn.getByRole("region", {name: "Answer statistics"}).waitFor();
    }

    public sources(turn: Locator): Locator {
        return turn.getByRole("list", {name: "Sources"});
    }

    /** Hovers "[n]" in the sources and returns the tooltip it shows. */
    public async hoverCitation(turn: Locator, n: number): Promise<Locator> {
        // The marker's text is "[n]" followed by its (hidden) tooltip.
        const marker = this.sources(turn).locator(".cite-ref", {hasText: `[${n}]`}).first();
        await marker.hover();
        const tip = this.page.getByRole("tooltip").filter({visible: true}).first();
        await tip.waitFor();
        return tip;
    }

    public async openSource(turn: Locator, fileName: string): Promise<Locator> {
        await this.sources(turn).getByRole("button", {name: new RegExp(`^Open ${fileName.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}`)}).first().click();
        const dialog = this.page.getByRole("dialog", {name: `Document ${fileName}`});
        await dialog.waitFor();
        return dialog;
    }

    // Settings
    public setting(label: string): Locator {
        return this.page.getByLabel(label, {exact: true});
    }

    public async setNumber(label: string, value: string): Promise<void> {
        const input = this.page.getByRole("spinbutton", {name: label});
        await input.fill(value);
        await input.press("Enter");
    }

    // Models
    public get downloadInput(): Locator {
        return this.page.getByRole("textbox", {name: "Model URL or Hugging Face reference"});
    }

    public downloadProgress(name: string): Locator {
        return this.page.getByRole("progressbar", {name: `Downloading ${name}`});
    }

    public async downloadedBytes(name: string): Promise<number> {
        return Number(await this.downloadProgress(name).getAttribute("aria-valuenow") ?? "0");
    }

    public localModel(name: string): Locator {
        return this.page.getByRole("table", {name: "Local models"}).getByRole("row").filter({hasText: name});
    }
}
