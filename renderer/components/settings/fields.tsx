import {useEffect, useId, useState} from "react";

type Common = {label: string; hint?: string; pending?: boolean};

/** A labelled select whose change is saved at once. */
export function SelectSetting<V extends string>({label, hint, value, options, onChange}: Common & {
    value: V; options: readonly (readonly [V, string])[]; onChange(value: V): void;
}) {
    const id = useId();
    return (
        <div className="setting">
            <label htmlFor={id}>{label}</label>
            <select id={id} value={value} onChange={(event) => onChange(event.target.value as V)}>
                {options.map(([option, text]) => <option key={option} value={option}>{text}</option>)}
            </select>
            {hint !== undefined && <p className="setting-hint">{hint}</p>}
        </div>
    );
}

/**
 * A labelled number saved when it is committed (Enter or leaving the field), not on every keystroke. With `auto`,
 * an empty field means "let the engine choose" (null).
 */
export function NumberSetting({label, hint, pending, value, min, max, step, auto, onChange}: Common & {
    value: number | null; min?: number; max?: number; step?: number; auto?: string; onChange(value: number | null): void;
}) {
    const id = useId();
    const [draft, setDraft] = useState(value === null ? "" : String(value));
    useEffect(() => setDraft(value === null ? "" : String(value)), [value]);

    const commit = () => {
        const trimmed = draft.trim();
        if (trimmed === "" && auto !== undefined) {
            if (value !== null)
                onChange(null);
            return;
        }
        const parsed = Number(trimmed);
        const valid = trimmed !== "" && Number.isFinite(parsed) && (min === undefined || parsed >= min) && (max === undefined || parsed <= max);
        if (!valid) {
            setDraft(value === null ? "" : String(value));
            return;
        }
        if (parsed !== value)
            onChange(parsed);
    };

    return (
        <div className="setting">
            <label htmlFor={id}>{label}{pending === true && <span className="setting-pending"> (after restart)</span>}</label>
            <input
                id={id}
                type="number"
                value={draft}
                min={min}
                max={max}
                step={step}
                placeholder={auto}
                onChange={(event) => setDraft(event.target.value)}
                onBlur={commit}
                onKeyDown={(event) => {
                    if (event.key === "Enter")
                        commit();
                }}
            />
            {hint !== undefined && <p className="setting-hint">{hint}</p>}
        </div>
    );
}
