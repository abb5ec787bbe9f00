// llama.cpp's q8_0 and q4_0 block formats applied to f16 KV rows (ggml-quants.c quantize_row_q8_0_ref /
// quantize_row_q4_0_ref, then dequantized): what a KV cache of that type stores, for models whose head size (8 in
// stories260K) llama.cpp's quantized KV cache refuses ("block size 32 does not divide n_embd_head_k").
import {isTransposed, type KvBody} from "../../main/engine/kv/kv-blob.js";
import {f16ToF32, f32ToF16, floatToHalf, halfToFloat} from "./f16.js";

const block = 32;

function roundTripRow(x: Float32Array, type: "q8_0" | "q4_0"): void {
    for (let start = 0; start + block <= x.length; start += block) {
        if (type === "q8_0") {
            let amax = 0;
            for (let i = start; i < start + block; i++)
                amax = Math.max(amax, Math.abs(x[i]!));
            const d = amax / 127;
            const id = d ? 1 / d : 0;
            const dh = halfToFloat(floatToHalf(d));
            for (let i = start; i < start + block; i++)
                x[i] = Math.round(x[i]! * id) * dh;
        } else {
            let amax = 0, max = 0;
            for (let i = start; i < start + block; i++)
                if (Math.abs(x[i]!) > amax) {
                    amax = Math.abs(x[i]!);
                    max = x[i]!;
                }
            const d = max / -8;
            const id = d ? 1 / d : 0;
            const dh = halfToFloat(floatToHalf(d));
            for (let i = start; i < start + block; i++) {
                const q = Math.min(15, Math.trunc(x[i]! * id + 8.5));
                x[i] = (q - 8) * dh;
            }
        }
    }
}

/** A copy of `body` (f16, V untransposed) whose K and V rows went through the block format and back. */
export function ggmlQuantRoundTrip(body: KvBody, type: "q8_0" | "q4_0"): KvBody {
    return {
        ...body,
        layers: body.layers.map(({k, v}) => {
            if (isTransposed(v))
                throw new Error("ggmlQuantRoundTrip takes untransposed V (flash attention on)");
            const rows = (bytes: Uint8Array, rowSize: number) => {
                const values = f16ToF32(new Uint16Array(bytes.slice().buffer));
                const width = rowSize / 2;
                for (let r = 0; r < values.length / width; r++)
                    roundTripRow(values.subarray(r * width, (r + 1) * width), type);
                return new Uint8Array(f32ToF16(values).buffer);
            };
            return {k: {...k, rows: rows(k.rows, k.rowSize)}, v: {...v, rows: rows(v.rows, v.rowSize)}};
        })
    };
}
