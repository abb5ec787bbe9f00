/**
 * Events pushed from callbacks, read as an async iterable: `drain` yields them in order and returns after the one
 * `isLast` accepts (a stream's terminal event).
 */
export class AsyncQueue<T> {
    private readonly items: T[] = [];
    private wake: (() => void) | null = null;

    public push(item: T): void {
        this.items.push(item);
        this.wake?.();
    }

    public async* drain(isLast: (item: T) => boolean): AsyncGenerator<T> {
        for (;;) {
            const item = this.items.shift();
            if (item === undefined) {
                await new Promise<void>((resolve) => {
                    this.wake = resolve;
                });
                this.wake = null;
                continue;
            }
            yield item;
            if (isLast(item))
                return;
        }
    }
}
