import type {ChatEvent} from "../../main/contract/index.js";

export async function collectEvents(stream: AsyncIterable<ChatEvent>, onEvent?: (event: ChatEvent, index: number) => void): Promise<ChatEvent[]> {
    const events: ChatEvent[] = [];
    for await (const event of stream) {
        onEvent?.(event, events.length);
        events.push(event);
    }
    return events;
}

export function lastEvent<T extends ChatEvent["type"]>(events: ChatEvent[], type: T): Extract<ChatEvent, {type: T}> {
    const found = events.findLast((event) => event.type === type);
    if (found == null)
        throw new Error(`no ${type} event in ${JSON.stringify(events.map((event) => event.type))}`);

    return found as Extract<ChatEvent, {type: T}>;
}
