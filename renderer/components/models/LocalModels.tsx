import type {ModelInfo} from "../../../main/contract/index.js";
import {useApp} from "../../store/index.js";
import {formatBytes, formatCount} from "../format.js";
import {modelLabel} from "../ModelPicker.js";

/** The registry may carry more than the contract's ModelInfo (a can-blend flag, a quantization); shown when present. */
type Extra = {canBlend?: boolean; quantization?: string | null};

/** "Q4_K_M", "F16", … from the file's metadata, else from the registry or the file name. */
export function quantizationOf(model: ModelInfo & Extra, fromMetadata: string | null | undefined): string | null {
    if (fromMetadata != null)
        return fromMetadata;
    if (typeof model.quantization === "string")
        return model.quantization;
    const match = /(?:^|[-_.])((?:I?Q\d+(?:_[A-Z0-9]+)*)|F16|BF16|F32)(?=\.gguf$|[-_.])/i.exec(model.path.split(/[\\/]/).pop() ?? "");
    return match?.[1]?.toUpperCase() ?? null;
}

export function LocalModels() {
    const models = useApp((state) => state.models) as (ModelInfo & Extra)[];
    const activeModelId = useApp((state) => state.activeModelId);
    const details = useApp((state) => state.modelDetails);
    const selectModel = useApp((state) => state.selectModel);
    const busy = useApp((state) => state.modelBusy || state.activeTurnId !== null);
    const showBlend = models.some((model) => typeof model.canBlend === "boolean");

    return (
        <section aria-labelledby="local-models-heading">
            <h2 id="local-models-heading">On this machine</h2>
            {models.length === 0 ? <p>No model yet: download one below, or add a .gguf file from the header’s model menu.</p> : (
                <table className="models-table" aria-label="Local models">
                    <thead>
                        <tr>
                            <th scope="col">Model</th><th scope="col">Size</th><th scope="col">Quantization</th><th scope="col">Context</th>
                            {showBlend && <th scope="col">Can blend</th>}
                            <th scope="col"><span className="visually-hidden">Actions</span></th>
                        </tr>
                    </thead>
                    <tbody>
                        {models.map((model) => {
                            const label = modelLabel(model, models);
                            const active = model.id === activeModelId;
                            return (
                                <tr key={model.id} data-model={model.id}>
                                    <th scope="row" title={model.path}>{label}{model.architecture !== null && <span className="dim"> · {model.architecture}</span>}</th>
                                    <td>{formatBytes(model.sizeBytes)}</td>
                                    <td>{quantizationOf(model, details[model.id]?.quantization) ?? "—"}</td>
                                    <td>{model.contextLength === null ? "—" : formatCount(model.contextLength)}</td>
                                    {showBlend && <td>{model.canBlend === undefined ? "—" : model.canBlend ? "yes" : "no"}</td>}
                                    <td>
                                        {active ? <span className="badge">in use</span> : (
                                            <button type="button" className="ghost-button small" disabled={busy}
                                                aria-label={`Use ${label}`} onClick={() => selectModel(model.id)}>Use</button>
                                        )}
                                    </td>
                                </tr>
                            );
                        })}
                    </tbody>
                </table>
            )}
        </section>
    );
}
