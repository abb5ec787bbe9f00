// f16 <-> f32 in TypeScript, exact (round half to even) as ggml and F16C: for the tests' references and the GGUF
// fixture writer. The engine converts natively (native/src/half.h).

/**
 * Per f32 biased exponent in [102, 142] (values that round to a finite, non-zero f16 or to zero by a tie): the
 * f16 exponent bits (`base`) and how far the mantissa shifts right (`shift`). Below the f16 normal range the
 * implicit bit is kept and shifted further (subnormals).
 */
const floatToHalfBase = new Uint16Array(256);
const floatToHalfShift = new Uint8Array(256);
for (let exponent = 102; exponent <= 142; exponent++) {
    const e = exponent - 127;
    floatToHalfBase[exponent] = e < -14 ? 0 : (e + 15) << 10;
    floatToHalfShift[exponent] = e < -14 ? -e - 1 : 13;
}

const scratchF32 = new Float32Array(1);
const scratchU32 = new Uint32Array(scratchF32.buffer);

const halfToFloatTable = (() => {
    const table = new Float32Array(65536);
    for (let h = 0; h < 65536; h++) {
        const sign = h & 0x8000 ? -1 : 1;
        const exponent = (h >> 10) & 0x1f;
        const mantissa = h & 0x3ff;
        if (exponent === 0)
            table[h] = sign * mantissa * 2 ** -24;
        else if (exponent === 31)
            table[h] = mantissa === 0 ? sign * Infinity : NaN;
        else
            table[h] = sign * (1 + mantissa / 1024) * 2 ** (exponent - 15);
    }
    return table;
})();


export function halfToFloat(h: number): number {
    return halfToFloatTable[h & 0xffff]!;
}

/** Bits of the f32 `bits` rounded to the nearest f16, ties to even (as F16C and ggml's fallback do). */
function f32BitsToHalf(bits: number): number {
    const sign = (bits >>> 16) & 0x8000;
    const exponent = (bits >>> 23) & 0xff;
    const fraction = bits & 0x7fffff;
    if (exponent === 0xff)
        return sign | (fraction !== 0 ? 0x7e00 : 0x7c00);
    if (exponent > 142) // |x| >= 65536 rounds to infinity
        return sign | 0x7c00;
    if (exponent < 102) // |x| < 2^-25 rounds to zero
        return sign;
    const shift = floatToHalfShift[exponent]!;
    const mantissa = shift > 13 ? fraction | 0x800000 : fraction;
    let h = floatToHalfBase[exponent]! + (mantissa >>> shift);
    const roundBit = 1 << (shift - 1);
    const rest = mantissa & ((roundBit << 1) - 1);
    // Round half to even; a carry out of the mantissa bumps the exponent (up to infinity), which is right.
    if (rest > roundBit || (rest === roundBit && (h & 1) !== 0))
        h++;
    return sign | h;
}

export function floatToHalf(value: number): number {
    scratchF32[0] = value;
    return f32BitsToHalf(scratchU32[0]!);
}

/** Decodes f16 bits to f32; `out` may be passed to avoid an allocation. */
export function f16ToF32(src: Uint16Array, out: Float32Array = new Float32Array(src.length)): Float32Array {
    const table = halfToFloatTable;
    for (let i = 0; i < src.length; i++)
        out[i] = table[src[i]!]!;
    return out;
}

/** Encodes f32 to f16 bits, round half to even; `out` may be passed to avoid an allocation. */
export function f32ToF16(src: Float32Array, out: Uint16Array = new Uint16Array(src.length)): Uint16Array {
    const bits = new Uint32Array(src.buffer, src.byteOffset, src.length);
    for (let i = 0; i < src.length; i++)
        out[i] = f32BitsToHalf(bits[i]!);
    return out;
}
