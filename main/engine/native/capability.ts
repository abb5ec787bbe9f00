/**
 * Whether a part of the fast path (the patched llama.cpp build, the native addon, a model's blend session) is available
 * here, and why not when it is not. The one shape every "can this run here?" answer takes, so a reason travels unchanged
 * from the check that failed to the fallback the user sees.
 */
export type Capability<T> = {available: true, value: T} | {available: false, reason: string};

export function available<T>(value: T): Capability<T> {
    return {available: true, value};
}

export function unavailable<T = never>(reason: string): Capability<T> {
    return {available: false, reason};
}
