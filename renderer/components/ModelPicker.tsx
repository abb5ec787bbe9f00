import {useApp} from "../store/index.js";
import {formatBytes} from "./format.js";

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
                title={active === undefined ? "Choose the model that answers" : `${active.path}\n${formatBytes(active.sizeBytes)}`}
                onChange={(event) => {
                    if (event.target.value !== "")
                        selectModel(event.target.value);
                }}
            >
                {!modelsLoaded && <option value="">Loading models…</option>}
                {empty && <option value="">No models</option>}
                {modelsLoaded && !empty && active === undefined && <option value="">Choose a model…</option>}
                {models.map((model) => (
                    <option key={model.id} value={model.id}>
                        {model.name} ({formatBytes(model.sizeBytes)})
                    </option>
                ))}
            </select>
        </label>
    );
}
