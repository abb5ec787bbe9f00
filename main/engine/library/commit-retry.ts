/**
 * Runs a LanceDB write again when its commit lost a race with another writer's ("Retryable commit conflict"): the
 * data-folder lock keeps Weft's writers apart, but a reader building its index, or a process that predates the
 * lock, can still commit in between. Other errors pass straight through. The table's connection must read the
 * latest version on each operation (readConsistencyInterval 0), or every retry repeats the same stale commit.
 */
export async function retryCommit<T>(write: () => Promise<T>, attempts = 12): Promise<T> {
    for (let attempt = 1; ; attempt++) {
        try {
            return await write();
        } catch (error) {
            if (attempt >= attempts || !isCommitConflict(error))
                throw error;

            await new Promise((resolve) => setTimeout(resolve, Math.min(2000, 25 * 2 ** attempt) * (0.5 + Math.random())));
        }
    }
}

export function isCommitConflict(error: unknown): boolean {
    return /commit conflict|was preempted by concurrent transaction/i.test(String((error as Error)?.message ?? error));
}
