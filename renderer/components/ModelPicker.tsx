import type {ModelInfo} from "../../main/contract/index.js";
import {useApp} from "../store/index.js";
import {formatBytes} from "./format.js";

/**
 * A model's name from its GGUF metadata is often just the architecture ("llama") or shared by several
 * quantizations; then the registry id (from the file name, as `weft models select ID` takes it) says more.
 */
export function modelLabel(model: ModelInfo, all: ModelInfo[]): string {
    const name = model.name.trim();
    const ambiguous = name === "" || name.toLowerCase() === model.architecture?.toLowerCase()
        || all.some((other) => other.id !== model.id && other.name.trim() === name);
    return ambiguous ? model.id : name;
}

/** The header's model select; changing it makes the engine switch its active model. */
export function ModelPicker() {
    const models = useApp((state) => state.models);
    const modelsLoaded = useApp((state) => state.modelsLoaded);
    const activeModelId = useApp((state) => state.activeModelId);
    const modelBusy = useApp((state) => state.modelBusy);
    const streaming = useApp((state) => state.activeTurnId !== null);
    const online = useApp((state) => state.connection.kind === "open");
    const selectModel = useApp((state) => state.selectModel);

    const empty = modelsLoaded && models.length === 0;
    const active = models.find((model) => model.id === activeModelId);

    return (
        <label className="model-picker">
            <span className="visually-hidden">Model</span>
            <select
                data-testid="model-picker"
                value={active?.id ?? ""}
                disabled={!online || !modelsLoaded || empty || modelBusy || streaming}
                title={active === undefined ? "Choose the model that answers"
                    : `${active.path}\n${formatBytes(active.sizeBytes)}${active.blend.reason != null ? `\n${active.blend.reason}` : ""}`}
                onChange={(event) => {
                    if (event.target.value !== "")
                        selectModel(event.target.value);
                }}
            >
                {!modelsLoaded && <option value="">Loading models…</option>}
                {empty && <option value="">No models</option>}
                {modelsLoaded && !empty && active === undefined && <option value="">Choose a model…</option>}
                {models.map((model) => (
                    // A model that cannot blend answers with exact prefix reuse: said here, the reason in the tooltip.
                    <option key={model.id} value={model.id} title={model.blend.reason ?? undefined}>
                        {modelLabel(model, models)} ({formatBytes(model.sizeBytes)}){model.blend.canBlend ? "" : " · prefix only"}
                    </option>
                ))}
            </select>
        </label>
    );
}
