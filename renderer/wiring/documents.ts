import type {DocumentActions} from "../store/index.js";
import {messageOf, type Wiring, type WiringContext} from "./context.js";

/** Opens a cited document in the viewer; a later open replaces an earlier one still loading. */
export function wireDocuments({client, store, notify}: WiringContext): Wiring<DocumentActions> {
    let request = 0;
    return {
        actions: {
            async showInSystemViewer(path) {
                try {
                    if (!(await client.showInSystemViewer({path})).opened)
                        notify("The system has no viewer for this document.");
                } catch (error) {
                    notify(`Could not open the document: ${messageOf(error)}`);
                }
            },

            openDocument(citation) {
                const mine = ++request;
                store.setState({viewer: {citation, document: null, error: null}});
                client.openDocument({path: citation.path}).then(
                    (document) => {
                        if (mine === request && store.getState().viewer !== null)
                            store.setState({viewer: {citation, document, error: null}});
                    },
                    (error: unknown) => {
                        if (mine === request && store.getState().viewer !== null)
                            store.setState({viewer: {citation, document: null, error: messageOf(error)}});
                    }
                );
            }
        }
    };
}
