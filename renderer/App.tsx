import {useEffect} from "react";
import {ChatView} from "./components/ChatView.js";
import {Composer} from "./components/Composer.js";
import {Header} from "./components/Header.js";
import {LibraryPanel} from "./components/LibraryPanel.js";
import {NotAuthorized} from "./components/NotAuthorized.js";
import {Notice} from "./components/Notice.js";
import {useApp} from "./store/index.js";

export function App() {
    const connection = useApp((state) => state.connection);
    const cancel = useApp((state) => state.cancel);
    const toggleLibrary = useApp((state) => state.toggleLibrary);

    // Escape stops the streaming answer wherever the focus is (except inside the library panel, which it
    // closes); Ctrl+L (Cmd+L on macOS) shows or hides the library.
    useEffect(() => {
        const onKeyDown = (event: KeyboardEvent) => {
            if (event.isComposing)
                return;
            if (event.key === "Escape")
                cancel();
            else if ((event.ctrlKey || event.metaKey) && !event.altKey && !event.shiftKey && event.key.toLowerCase() === "l") {
                event.preventDefault();
                toggleLibrary();
            }
        };
        window.addEventListener("keydown", onKeyDown);
        return () => window.removeEventListener("keydown", onKeyDown);
    }, [cancel, toggleLibrary]);

    if (connection.kind === "unauthorized")
        return <NotAuthorized reason={connection.reason} />;

    return (
        <div className="app">
            <Header />
            <Notice />
            <div className="app-body">
                <div className="chat-pane">
                    <ChatView />
                    <Composer />
                </div>
                <LibraryPanel />
            </div>
        </div>
    );
}
