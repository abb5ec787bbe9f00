import {useApp} from "../../store/index.js";
import {formatCount, plural} from "../format.js";

/** The engine computing the chunks' KV caches in the background (lowest priority: questions go first). */
export function CacheWarming() {
    const warm = useApp((state) => state.cacheWarm);
    const busy = useApp((state) => state.cacheWarmBusy);
    const online = useApp((state) => state.connection.kind === "open");
    const pause = useApp((state) => state.pauseCacheWarm);
    const resume = useApp((state) => state.resumeCacheWarm);

    if (warm === null || (warm.state !== "running" && warm.state !== "paused"))
        return null;

    const paused = warm.state === "paused";
    const fraction = warm.total > 0 ? warm.done / warm.total : null;
    return (
        <section
            className="ingest cache-warm"
            data-testid="cache-warm"
            data-state={warm.state}
            data-done={warm.done}
            data-total={warm.total}
            aria-label="Preparing KV caches"
        >
            <div className="ingest-title">
                <span data-testid="cache-warm-numbers" title="Each chunk's KV cache is computed ahead of questions, so answers can reuse it.">
                    Preparing KV caches: {formatCount(warm.done)}/{formatCount(warm.total)}{paused && " (paused)"}
                </span>
                <button
                    type="button"
                    className="ghost-button small"
                    data-testid="cache-warm-toggle"
                    onClick={paused ? resume : pause}
                    disabled={busy || !online}
                >
                    {paused ? "Resume" : "Pause"}
                </button>
            </div>
            <div
                className={`progress-track${fraction === null && !paused ? " indeterminate" : ""}`}
                role="progressbar"
                aria-label="Preparing KV caches"
                aria-valuemin={0}
                aria-valuemax={warm.total}
                aria-valuenow={fraction === null ? undefined : warm.done}
            >
                <div className="progress-fill" style={{width: `${Math.round((fraction ?? 0) * 100)}%`}} />
            </div>
            <p className="ingest-numbers">
                {formatCount(warm.computed)} computed
                {warm.failed > 0 && <span className="ingest-problems">{" · "}{plural(warm.failed, "failure")}</span>}
                {" · "}questions go first
            </p>
        </section>
    );
}
