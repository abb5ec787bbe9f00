import {useApp} from "../../store/index.js";
import {recommendedModels} from "./recommended.js";

export function RecommendedModels() {
    const start = useApp((state) => state.startDownload);
    const running = useApp((state) => state.downloads.filter((download) => download.state === "running").map((download) => download.source).join("\n"));
    const online = useApp((state) => state.connection.kind === "open");
    return (
        <section aria-labelledby="recommended-heading">
            <h2 id="recommended-heading">Recommended</h2>
            <ul className="recommended">
                {recommendedModels.map((model) => (
                    <li key={model.source}>
                        <div>
                            <strong>{model.name}</strong> <span className="dim">≈ {(model.approxBytes / 1e9).toFixed(1)} GB · {model.kind}</span>
                            <div className="dim">{model.note}</div>
                        </div>
                        <button type="button" className="ghost-button small" aria-label={`Download ${model.name}`}
                            disabled={!online || running.split("\n").includes(model.source)} onClick={() => start(model.source)}>
                            Download
                        </button>
                    </li>
                ))}
            </ul>
        </section>
    );
}
