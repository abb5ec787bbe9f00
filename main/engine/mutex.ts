/** Runs tasks one at a time in arrival order; a failed task does not block the next. */
export class Mutex {
    private tail: Promise<void> = Promise.resolve();

    public async lock(): Promise<() => void> {
        let release!: () => void;
        const next = new Promise<void>((resolve) => {
            release = resolve;
        });
        const previous = this.tail;
        this.tail = previous.then(() => next);
        await previous;
        return release;
    }
}
