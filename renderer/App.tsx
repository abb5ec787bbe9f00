import {useEffect} from "react";
import {ChatView} from "./components/ChatView.js";
import {Composer} from "./components/Composer.js";
import {Header} from "./components/Header.js";
import {NotAuthorized} from "./components/NotAuthorized.js";
import {Notice} from "./components/Notice.js";
import {useApp} from "./store/index.js";

export function App() {
    const connection = useApp((state) => state.connection);
    const cancel = useApp((state) => state.cancel);

    // Escape stops the streaming answer wherever the focus is.
    useEffect(() => {
        const onKeyDown = (event: KeyboardEvent) => {
            if (event.key === "Escape" && !event.isComposing)
                cancel();
        };
        window.addEventListener("keydown", onKeyDown);
        return () => window.removeEventListener("keydown", onKeyDown);
    }, [cancel]);

    if (connection.kind === "unauthorized")
        return <NotAuthorized reason={connection.reason} />;

    return (
        <div className="app">
            <Header />
            <Notice />
            <ChatView />
            <Composer />
        </div>
    );
}
