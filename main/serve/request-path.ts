/**
 * The path and query of a request target, or null when the target is not an origin-form path. Node hands
 * the request line's target over unchecked, and `new URL("//[", base)` throws, so nothing here may throw.
 */
export function parseRequestTarget(target: string | undefined): {pathname: string, searchParams: URLSearchParams} | null {
    if (target == null || !target.startsWith("/") || target.startsWith("//"))
        return null;

    try {
        const url = new URL(target, "http://localhost");
        return {pathname: url.pathname, searchParams: url.searchParams};
    } catch {
        return null;
    }
}
