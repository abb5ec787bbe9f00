/**
 * Questions and ingests waiting or running: background cache warming gives way to them. One counter shared by the
 * chat and library services; the warmer waits on it.
 */
export class Foreground {
    private count = 0;
    private idleWaiters: (() => void)[] = [];

    public get busy(): boolean {
        return this.count > 0;
    }

    /** Marks one piece of foreground work as started; the returned function ends it (once). */
    public begin(): () => void {
        this.count++;
        let ended = false;
        return () => {
            if (ended)
                return;

            ended = true;
            if (--this.count === 0) {
                const waiters = this.idleWaiters;
                this.idleWaiters = [];
                for (const resolve of waiters)
                    resolve();
            }
        };
    }

    /** Resolves once nothing is in the foreground, or when `signal` aborts. */
    public whenIdle(signal: AbortSignal): Promise<void> {
        if (this.count === 0 || signal.aborted)
            return Promise.resolve();

        return new Promise((resolve) => {
            const done = () => {
                signal.removeEventListener("abort", done);
                resolve();
            };
            signal.addEventListener("abort", done, {once: true});
            this.idleWaiters.push(done);
        });
    }
}
