import {useApp} from "../../store/index.js";
import {NumberSetting, SelectSetting} from "./fields.js";

const MiB = 1024 ** 2;
const strategies = [
    ["auto", "auto (engine chooses)"], ["full", "full (no reuse)"], ["prefix", "prefix"], ["naive", "naive blend"],
    ["chunk-head", "chunk-head"], ["hkvd", "hkvd (CacheBlend)"]
] as const;

/** The engine's saved settings; each change is saved at once (some apply at the next start, as marked). */
export function SettingsView() {
    const view = useApp((state) => state.settingsView);
    const saving = useApp((state) => state.settingsSaving);
    const change = useApp((state) => state.changeSettings);
    const online = useApp((state) => state.connection.kind === "open");

    if (view === null)
        return <section className="view" aria-label="Settings"><h1>Settings</h1><p>Loading the settings…</p></section>;

    const {settings, pendingRestart} = view;
    const restart = (key: string) => pendingRestart.includes(key);
    const disabled = !online;
    return (
        <section className="view settings-view" aria-labelledby="settings-heading">
            <h1 id="settings-heading">Settings</h1>
            {pendingRestart.length > 0 && (
                <p className="settings-note" role="status">Some changes apply when Weft starts next: {pendingRestart.join(", ")}.</p>
            )}
            <fieldset disabled={disabled}>
                <legend>Answers</legend>
                <SelectSetting label="KV strategy" value={settings.strategy} options={strategies}
                    onChange={(strategy) => change({strategy})} hint="How each answer's prompt KV cache is built" />
                <NumberSetting label="Recompute ratio" value={settings.ratio} min={0} max={1} step={0.05}
                    onChange={(ratio) => change({ratio: ratio ?? 0.15})} hint="Share of the chunk tokens hkvd and chunk-head recompute, the question's own sources included" />
                <SelectSetting label="Theme" value={settings.theme} options={[["system", "System"], ["light", "Light"], ["dark", "Dark"]]}
                    onChange={(theme) => change({theme})} />
            </fieldset>
            <fieldset disabled={disabled}>
                <legend>Caches</legend>
                <NumberSetting label="RAM cache (MiB)" value={Math.round(settings.ramCacheBytes / MiB)} min={16} step={64}
                    onChange={(mib) => change({ramCacheBytes: (mib ?? 1024) * MiB})} pending={restart("ramCacheBytes")} />
                <NumberSetting label="Disk cache (MiB)" value={Math.round(settings.diskCacheBytes / MiB)} min={16} step={256}
                    onChange={(mib) => change({diskCacheBytes: (mib ?? 8192) * MiB})} pending={restart("diskCacheBytes")} />
                <NumberSetting label="GPU-resident cache (MiB)" value={settings.residentCacheBytes === null ? null : Math.round(settings.residentCacheBytes / MiB)}
                    min={0} step={256} auto="auto" onChange={(mib) => change({residentCacheBytes: mib === null ? null : mib * MiB})}
                    pending={restart("residentCacheBytes")} hint="Empty: a quarter of the free GPU memory, at most 4 GiB" />
            </fieldset>
            <fieldset disabled={disabled}>
                <legend>Library and engine</legend>
                <NumberSetting label="Chunk size (tokens)" value={settings.chunkTokens} min={64} max={4096} step={32}
                    onChange={(chunkTokens) => change({chunkTokens: chunkTokens ?? 384})} hint="Used for files indexed from now on" />
                <NumberSetting label="Threads" value={settings.threads} min={1} max={1024} step={1} auto="auto"
                    onChange={(threads) => change({threads})} pending={restart("threads")} hint="Empty: one per core" />
                <NumberSetting label="GPU layers" value={settings.gpuLayers} min={0} max={1024} step={1} auto="auto"
                    onChange={(gpuLayers) => change({gpuLayers})} pending={restart("gpuLayers")} hint="Empty: as many as fit" />
                <div className="setting wide">
                    <label htmlFor="data-folder">Data folder</label>
                    <input id="data-folder" type="text" readOnly value={view.dataDir} />
                    <p className="setting-hint">Start Weft with --data PATH (or WEFT_DATA) to use another folder.</p>
                </div>
            </fieldset>
            <p className="settings-note" aria-live="polite">{saving ? "Saving…" : "Changes are saved at once."}</p>
        </section>
    );
}
