import {useEffect} from "react";
import type {CacheTier} from "../../../main/contract/index.js";
import {useApp} from "../../store/index.js";
import {formatBytes, formatCount} from "../format.js";
import {TtftChart} from "./TtftChart.js";

const tiers = [["gpuResident", "GPU-resident"], ["ram", "RAM"], ["disk", "Disk"]] as const;

/** The chunk KV caches as a whole, and how fast this conversation's answers started against a full prefill. */
export function CacheView() {
    const overview = useApp((state) => state.cacheOverview);
    const load = useApp((state) => state.loadCacheOverview);
    const online = useApp((state) => state.connection.kind === "open");

    useEffect(() => {
        if (online)
            load();
    }, [online, load]);

    return (
        <section className="view cache-view" aria-labelledby="cache-heading">
            <div className="view-head">
                <h1 id="cache-heading">Cache</h1>
                <button type="button" className="ghost-button small" onClick={load} disabled={!online}>Refresh</button>
            </div>
            {overview === null ? <p>Reading the cache totals…</p> : (
                <>
                    <table className="cache-table" aria-label="Cache tiers">
                        <thead>
                            <tr><th scope="col">Tier</th><th scope="col">Entries</th><th scope="col">Size</th><th scope="col">Budget</th><th scope="col">Hits</th></tr>
                        </thead>
                        <tbody>
                            {tiers.map(([key, name]) => <TierRow key={key} name={name} tier={overview[key]} />)}
                        </tbody>
                    </table>
                    <dl className="cache-totals">
                        <div><dt>Hit rate</dt><dd data-total="hitRate">{overview.hitRate === null ? "no lookups yet" : `${(overview.hitRate * 100).toFixed(0)}%`}</dd></div>
                        <div><dt>Saved by the codec</dt><dd>{overview.codecBytesSaved === null ? "no codec yet" : formatBytes(overview.codecBytesSaved)}</dd></div>
                        <div><dt>Evictions</dt><dd>{formatCount(overview.evictions)}</dd></div>
                        <div><dt>Dropped as damaged</dt><dd>{formatCount(overview.droppedCorrupt)}</dd></div>
                    </dl>
                </>
            )}
            <TtftChart />
        </section>
    );
}

function TierRow({name, tier}: {name: string; tier: CacheTier}) {
    return (
        <tr data-tier={name}>
            <th scope="row">{name}</th>
            <td data-value={tier.entries}>{formatCount(tier.entries)}</td>
            <td>{formatBytes(tier.bytes)}</td>
            <td>{tier.budgetBytes === 0 ? "off" : formatBytes(tier.budgetBytes)}</td>
            <td>{tier.hits === null ? "—" : `${formatCount(tier.hits)} / ${formatCount(tier.hits + (tier.misses ?? 0))}`}</td>
        </tr>
    );
}
