// Page object for the chat window: what a user sees and does, in test terms.
import type {Locator, Page} from "playwright-core";

export type RecordedAnswer = {text: string; status: string | null; at: number};

const finishedStatuses = ["done", "cancelled", "error"];

/**
 * Runs in the page before its own scripts: records every distinct (text, status) of the newest answer
 * bubble, so a test can tell that tokens arrived one after another rather than all at once.
 */
const answerRecorderScript = `(() => {
    const seen = [];
    window.__weftAnswers = seen;
    const record = () => {
        const answers = document.querySelectorAll('[data-testid="answer"]');
        const last = answers[answers.length - 1];
        if (!last) return;
        const text = last.textContent || "";
        const status = last.getAttribute("data-status");
        const previous = seen[seen.length - 1];
        if (!previous || previous.text !== text || previous.status !== status)
            seen.push({text, status, at: performance.now()});
    };
    new MutationObserver(record).observe(document, {subtree: true, childList: true, characterData: true, attributes: true, attributeFilter: ["data-status"]});
})();`;

export class ChatPage {
    public readonly questionInput: Locator;
    public readonly sendButton: Locator;
    public readonly stopButton: Locator;
    public readonly modelPicker: Locator;
    public readonly answers: Locator;
    public readonly connectionState: Locator;
    public readonly notAuthorized: Locator;

    public constructor(public readonly page: Page) {
        this.questionInput = page.getByTestId("question-input");
        this.sendButton = page.getByTestId("send");
        this.stopButton = page.getByTestId("stop");
        this.modelPicker = page.getByTestId("model-picker");
        this.answers = page.getByTestId("answer");
        this.connectionState = page.getByTestId("connection-state");
        this.notAuthorized = page.getByTestId("not-authorized");
    }

    public async open(url: string, options: {recordAnswers?: boolean} = {}): Promise<void> {
        if (options.recordAnswers === true)
            await this.page.addInitScript({content: answerRecorderScript});
        await this.page.goto(url);
    }

    public async waitUntilConnected(timeoutMs = 30_000): Promise<void> {
        await this.page.locator('[data-testid="connection-state"][data-state="open"]').waitFor({timeout: timeoutMs});
    }

    /** Picks `name` (or, without one, the first model) unless a model is already active. */
    public async ensureModelSelected(name?: string): Promise<string> {
        await this.page.locator('[data-testid="model-picker"] option[value]:not([value=""])').first().waitFor({state: "attached"});
        const current = await this.modelPicker.inputValue();
        if (current !== "" && name === undefined)
            return current;
        const values = await this.modelPicker.locator('option:not([value=""])').evaluateAll(
            (options, wanted) => options
                .map((option) => ({value: option.getAttribute("value") ?? "", label: option.textContent ?? ""}))
                .filter((option) => wanted === null || option.label.includes(wanted)),
            name ?? null
        );
        const value = values[0]?.value;
        if (value === undefined)
            throw new Error(`no model matching ${name ?? "anything"} in the picker`);
        if (value !== current)
            await this.modelPicker.selectOption(value);
        await this.page.locator(`[data-testid="model-picker"]:not([disabled])`).waitFor();
        return value;
    }

    /** Index (among the answer bubbles) of the answer to the last question asked. */
    private pendingAnswer = 0;

    /** Picks the KV reuse strategy (and ratio, for hkvd and chunk-head) used for the next questions. */
    public async chooseStrategy(strategy: string, ratio?: number): Promise<void> {
        await this.page.getByTestId("strategy-picker").selectOption(strategy);
        if (ratio !== undefined)
            await this.page.getByTestId("ratio-input").fill(String(ratio));
    }

    /** Types the question and presses Enter, as a user would. */
    public async ask(question: string): Promise<void> {
        this.pendingAnswer = await this.answers.count();
        await this.questionInput.fill(question);
        await this.questionInput.press("Enter");
    }

    /**
     * Types the question, then presses Enter and Escape in the same page task: a tiny model can finish its
     * whole answer in the time one more round trip to the browser takes, so separate presses would race it.
     */
    public async askAndPressEscape(question: string): Promise<void> {
        this.pendingAnswer = await this.answers.count();
        await this.questionInput.fill(question);
        // A string runs as an expression in the page (this file is type-checked without DOM types).
        await this.page.evaluate(`(() => {
            const input = document.querySelector('[data-testid="question-input"]');
            const key = (name) => input.dispatchEvent(new KeyboardEvent("keydown", {key: name, code: name, bubbles: true, cancelable: true}));
            key("Enter");
            key("Escape");
        })()`);
    }

    private answerIn(statuses: string[]): Locator {
        const selector = statuses.map((status) => `[data-testid="answer"][data-status="${status}"]`).join(", ");
        return this.answers.nth(this.pendingAnswer).and(this.page.locator(selector));
    }

    /** The question-and-answer block of the last question asked. */
    public turn(): Locator {
        return this.page.getByTestId("turn").nth(this.pendingAnswer);
    }

    /** Waits until the answer to the last question is finished; throws with the inline error if it failed. */
    public async waitForAnswer(timeoutMs = 60_000): Promise<{status: string; text: string}> {
        return this.waitForAnswerEnd(timeoutMs, true);
    }

    /** Like waitForAnswer, but an error is returned (status "error", text = the inline message) instead of thrown. */
    public async waitForAnswerEnd(timeoutMs = 60_000, throwOnError = false): Promise<{status: string; text: string}> {
        // Attached, not visible: an answer that failed before its first token is an empty, hidden bubble.
        await this.answerIn(finishedStatuses).waitFor({state: "attached", timeout: timeoutMs});
        const answer = this.answers.nth(this.pendingAnswer);
        const status = (await answer.getAttribute("data-status")) ?? "";
        if (status === "error") {
            const message = (await this.turn().getByTestId("answer-error").textContent()) ?? "(no message)";
            if (throwOnError)
                throw new Error(`the answer failed: ${message}`);
            return {status, text: message};
        }
        return {status, text: (await answer.textContent()) ?? ""};
    }

    /** Every distinct (text, status) the newest answer went through; needs `open(url, {recordAnswers: true})`. */
    public async recordedAnswers(): Promise<RecordedAnswer[]> {
        return this.page.evaluate<RecordedAnswer[]>("window.__weftAnswers ?? []");
    }

    /** Opens the full breakdown under the answer to the last question (the strip's Details) and waits for it. */
    public async showStats(): Promise<void> {
        const toggle = this.turn().getByRole("region", {name: "Answer summary"}).getByRole("button", {name: "Details"});
        await toggle.waitFor();
        await toggle.click();
        await this.stats().waitFor();
    }

    /** The stats panel under the answer to the last question (hidden until showStats). */
    public stats(): Locator {
        return this.turn().getByTestId("answer-stats");
    }

    /** The raw number (or string) of one stat of that answer, from its data-value. */
    public async stat(key: string): Promise<string | null> {
        return this.stats().locator(`[data-stat="${key}"]`).getAttribute("data-value");
    }
}
