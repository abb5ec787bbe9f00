import {useEffect} from "react";
import {useApp} from "../../store/index.js";
import {Downloads} from "./Downloads.js";
import {HardwareInfo} from "./HardwareInfo.js";
import {LocalModels} from "./LocalModels.js";
import {RecommendedModels} from "./RecommendedModels.js";

/** Models on this machine, a few recommended ones to download, downloads by URL, and the backend they run on. */
export function ModelsView() {
    const online = useApp((state) => state.connection.kind === "open");
    const loadHardware = useApp((state) => state.loadHardware);
    const refresh = useApp((state) => state.refresh);

    useEffect(() => {
        if (online) {
            refresh();
            loadHardware();
        }
    }, [online, refresh, loadHardware]);

    return (
        <section className="view models-view" aria-labelledby="models-heading">
            <h1 id="models-heading">Models</h1>
            <HardwareInfo />
            <LocalModels />
            <Downloads />
            <RecommendedModels />
        </section>
    );
}
