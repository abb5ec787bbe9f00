import {useEffect} from "react";
import {useApp} from "../store/index.js";

/** Puts the saved theme on <html data-theme>, following the system's choice when the setting says "system". */
export function useTheme(): void {
    const theme = useApp((state) => state.settingsView?.settings.theme ?? "system");
    useEffect(() => {
        const query = window.matchMedia("(prefers-color-scheme: light)");
        const apply = () => {
            const resolved = theme === "system" ? (query.matches ? "light" : "dark") : theme;
            document.documentElement.dataset.theme = resolved;
            document.documentElement.style.colorScheme = resolved;
        };
        apply();
        query.addEventListener("change", apply);
        return () => query.removeEventListener("change", apply);
    }, [theme]);
}
