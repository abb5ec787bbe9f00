import {useState} from "react";
import {useApp} from "../store/index.js";

/** Shown when the engine knows no model: how to add one from the terminal, or here by path. */
export function NoModels() {
    const addModel = useApp((state) => state.addModel);
    const busy = useApp((state) => state.modelBusy);
    const [path, setPath] = useState("");

    return (
        <div className="empty-chat no-models" data-testid="no-models">
            <h1>No model yet</h1>
            <p>Weft answers with a local GGUF model. Add one from a terminal:</p>
            <pre><code>weft models add PATH/TO/model.gguf</code></pre>
            <p>or paste the path of a .gguf file on this machine:</p>
            <form
                className="add-model"
                onSubmit={(event) => {
                    event.preventDefault();
                    void addModel(path).then((added) => {
                        if (added)
                            setPath("");
                    });
                }}
            >
                <input
                    type="text"
                    value={path}
                    placeholder="/path/to/model.gguf"
                    spellCheck={false}
                    onChange={(event) => setPath(event.target.value)}
                />
                <button type="submit" className="primary-button" disabled={busy || path.trim() === ""}>Add model</button>
            </form>
        </div>
    );
}
