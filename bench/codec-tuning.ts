// The KV codec's tuning flags (issue #13's sweeps), shared by `npm run bench -- codec` and bench/codec-tail.ts: each
// maps to a field of the encoder's `tuning` option (native/src/kv_codec.h), defaults the level's own tables.
import type {KvCodecEncodeSpec} from "../main/engine/native/native-addon-types.js";

type KvCodecTuning = NonNullable<KvCodecEncodeSpec["tuning"]>;

export const codecTuningFlags = {
    /** Exponent of a channel's own spread in its step (0: one step per tensor, 1: per-channel SNR; default the level's); K / V step factors on the level's. */
    beta: {type: "string", default: ""},
    kfactor: {type: "string", default: "1"},
    vfactor: {type: "string", default: "1"},
    /** K / V step factor of the first layers (the fine ones) and how many of every 32 layers are fine. */
    kfine: {type: "string", default: "0.6"},
    vfine: {type: "string", default: "0.6"},
    kfinelayers: {type: "string", default: "10"},
    vfinelayers: {type: "string", default: "2"},
    /** 0 a channel's spread is its RMS deviation, 1 its median absolute deviation (x 1.4826). */
    spread: {type: "string", default: "0"},
    /** Content-key heads' step factor (default the level's: 0.25 at L4 and L5, 1 elsewhere) and the low/high-frequency spread ratio that marks one. */
    content: {type: "string", default: ""},
    contentratio: {type: "string", default: "1.3"}
} as const;

type TuningArgs = {[K in keyof typeof codecTuningFlags]: string};

/** The encoder's tuning from the flags. */
export function codecTuning(args: TuningArgs): KvCodecTuning {
    return {
        ...(args.beta === "" ? {} : {spreadExponent: Number(args.beta)}), kStepFactor: Number(args.kfactor), vStepFactor: Number(args.vfactor),
        kFineFactor: Number(args.kfine), vFineFactor: Number(args.vfine), kFineLayers: Number(args.kfinelayers), vFineLayers: Number(args.vfinelayers),
        spreadMode: Number(args.spread), ...(args.content === "" ? {} : {contentFactor: Number(args.content)}), contentRatio: Number(args.contentratio)
    };
}
