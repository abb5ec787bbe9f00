// The KV codec's decoder as steps that run side by side, as a GPU runs them (kv_codec_cuda.cu): every rANS state of
// every section on its own thread (symbols), then every row (raw low bits and escapes, read at offsets that a scan of
// the rows' counts gives), every channel (deltas undone, dequantized) and every (row, head) of K (rotated back). The
// same functions compile for the host, where native/tools/kv_codec_parallel_check.cpp runs them in loops against
// kv_codec_decode.cpp: both give the same f16 bits and accept and refuse the same files.
//
// A section is planned on the host first (parseSection: every size and parameter checked); what these steps check is
// what only decoding can tell (a stream that ends too soon or too late, escapes or raw bits that do not add up), as
// an error code per section.
#pragma once

#include <cstddef>
#include <cstdint>

#ifdef __CUDACC__
#include <cuda_fp16.h>
#define WEFT_HD __host__ __device__ __forceinline__
#else
#include "half.h"
#define WEFT_HD inline
#endif

namespace weft_codec::parallel {

// The format's constants (kv_codec_detail.h), repeated as plain values for device code.
constexpr uint32_t kScaleBits = 12;
constexpr uint32_t kScale = 1u << kScaleBits;
constexpr uint32_t kRansL = 1u << 16;
constexpr int32_t kRange = 15;
constexpr uint32_t kEscape = 31;
constexpr uint32_t kMaxStates = 16;

/** What a section's decode found wrong (0: nothing). */
enum SectionError : uint32_t {
    sectionOk = 0,
    streamShort = 1,      // a rANS state needed a word past its stream's end
    streamLong = 2,       // a rANS state ended before its stream did, or not in its initial state
    escapesMismatch = 3,  // the rows' escapes do not add up to the section's count
    rawBitsMismatch = 4   // the rows' raw bits do not fill the section's raw bytes (to the last byte)
};

/** A channel's parameters as the steps read them (parseSection's SectionChannel, table classes as slot offsets). */
struct ChannelPlan {
    int32_t mean;
    float step;
    uint32_t anchorSlots, deltaSlots;  // offsets of the channel's tables in the slot array
    uint8_t anchorShift, deltaShift, pad[2];
};

/** One section (a layer's K or V): where its bytes are in the container, its shape and where its output goes. */
struct SectionPlan {
    uint64_t streamAt[kMaxStates];  // each rANS state's stream (its final state, then its words), from the container's start
    uint64_t streamEnd[kMaxStates];
    uint64_t rawAt, rawBytes, escapeAt, escapes;
    uint64_t valueAt;     // the section's first value in the symbol and value scratch (nTokens x C of each)
    uint32_t channelAt;   // its first channel in the channel plans
    uint32_t rowAt;       // its first row in the row counts (nTokens + 1 of each: the scan's total last)
    uint32_t mode, group, S, C, nTokens;
    uint32_t rotate;      // 1: K coded un-rotated, turned back with the rotation table
    uint32_t headDim, nRot, ropeKind;  // ropeKind 1: pairs (2i, 2i+1); 2: pairs (i, i + nRot / 2)
    uint16_t* out;        // element (t, c) at out[t * rowStride + c * colStride]
    uint64_t rowStride, colStride;
};

WEFT_HD bool anchorRowOf(const SectionPlan& s, uint32_t t) {
    return s.mode == 0 || (s.mode == 1 ? t == 0 : t % s.group == 0);
}

WEFT_HD uint32_t load32(const uint8_t* p) {
    return (uint32_t) p[0] | ((uint32_t) p[1] << 8) | ((uint32_t) p[2] << 16) | ((uint32_t) p[3] << 24);
}

WEFT_HD int32_t wrapAdd(int32_t a, int32_t b) {
    return (int32_t) ((uint32_t) a + (uint32_t) b);
}

WEFT_HD uint16_t halfBits(float value) {
#ifdef __CUDACC__
    return __half_as_ushort(__float2half_rn(value));
#else
    return weft_half::floatToHalf(value);
#endif
}

// Products and sums rounded one by one, as the host decoder computes them: a fused multiply-add (which the device
// compiler would otherwise form) rounds once and can move an f16 result by one unit.
WEFT_HD float mulRn(float a, float b) {
#ifdef __CUDA_ARCH__
    return __fmul_rn(a, b);
#else
    return a * b;
#endif
}
WEFT_HD float addRn(float a, float b) {
#ifdef __CUDA_ARCH__
    return __fadd_rn(a, b);
#else
    return a + b;
#endif
}
WEFT_HD float subRn(float a, float b) {
#ifdef __CUDA_ARCH__
    return __fsub_rn(a, b);
#else
    return a - b;
#endif
}

/**
 * Step 1, one thread per (section, state k): state k's symbols, values k, k + S, ... of the section (token-major),
 * each with its channel's anchor or delta table. Returns a SectionError.
 */
WEFT_HD uint32_t stateSymbols(const uint8_t* data, const SectionPlan& s, const ChannelPlan* channels, const uint32_t* slots, uint32_t k,
        uint8_t* symbols) {
    const uint8_t* rp = data + s.streamAt[k];
    const uint8_t* end = data + s.streamEnd[k];
    uint32_t x = load32(rp);
    rp += 4;
    const ChannelPlan* ch = channels + s.channelAt;
    uint8_t* out = symbols + s.valueAt;
    const uint64_t total = (uint64_t) s.nTokens * s.C;
    uint32_t t = (uint32_t) (k / s.C), c = (uint32_t) (k % s.C);
    bool anchor = anchorRowOf(s, t);
    for (uint64_t i = k; i < total; i += s.S) {
        const uint32_t e = slots[(anchor ? ch[c].anchorSlots : ch[c].deltaSlots) + (x & (kScale - 1))];
        x = (e >> 18) * (x >> kScaleBits) + ((e >> 6) & (kScale - 1));
        if (x < kRansL) {
            if (end - rp < 2)
                return streamShort;
            x = (x << 16) | (uint32_t) rp[0] | ((uint32_t) rp[1] << 8);
            rp += 2;
        }
        out[i] = (uint8_t) (e & 63);
        c += s.S;
        if (c >= s.C) {
            while (c >= s.C) {
                c -= s.C;
                t++;
            }
            anchor = anchorRowOf(s, t);
        }
    }
    return rp == end && x == kRansL ? sectionOk : streamLong;
}

/** Step 2, one thread per (section, row t): the row's raw bits and escapes. */
WEFT_HD void rowCounts(const SectionPlan& s, const ChannelPlan* channels, const uint8_t* symbols, uint32_t t, uint32_t& bits, uint32_t& escapes) {
    const uint8_t* row = symbols + s.valueAt + (uint64_t) t * s.C;
    const ChannelPlan* ch = channels + s.channelAt;
    const bool anchor = anchorRowOf(s, t);
    uint32_t b = 0, e = 0;
    for (uint32_t c = 0; c < s.C; c++) {
        if (row[c] == kEscape)
            e++;
        else
            b += anchor ? ch[c].anchorShift : ch[c].deltaShift;
    }
    bits = b;
    escapes = e;
}

/**
 * Step 3, one thread per section: the rows' counts become each row's first raw bit and first escape (exclusive
 * scan, in place; the totals after the last row), checked against the section's raw bytes and escape count as the
 * host decoder checks them. Returns a SectionError.
 */
WEFT_HD uint32_t scanRows(const SectionPlan& s, uint64_t* rowBits, uint64_t* rowEscapes) {
    uint64_t bits = 0, escapes = 0;
    for (uint32_t t = 0; t < s.nTokens; t++) {
        const uint64_t b = rowBits[s.rowAt + t], e = rowEscapes[s.rowAt + t];
        rowBits[s.rowAt + t] = bits;
        rowEscapes[s.rowAt + t] = escapes;
        bits += b;
        escapes += e;
    }
    rowBits[s.rowAt + s.nTokens] = bits;
    rowEscapes[s.rowAt + s.nTokens] = escapes;
    if (escapes != s.escapes)
        return escapesMismatch;
    if (!(bits <= s.rawBytes * 8 && bits + 8 > s.rawBytes * 8))
        return rawBitsMismatch;
    return sectionOk;
}

/**
 * Step 4, one thread per (section, row t), after a scan that found no error: the row's values (above their raw low
 * bits, or escaped), still as deltas where the section codes deltas.
 */
WEFT_HD void rowValues(const uint8_t* data, const SectionPlan& s, const ChannelPlan* channels, const uint8_t* symbols,
        const uint64_t* rowBits, const uint64_t* rowEscapes, uint32_t t, int32_t* values) {
    const uint8_t* row = symbols + s.valueAt + (uint64_t) t * s.C;
    int32_t* out = values + s.valueAt + (uint64_t) t * s.C;
    const ChannelPlan* ch = channels + s.channelAt;
    const bool anchor = anchorRowOf(s, t);
    const uint8_t* raw = data + s.rawAt;
    const uint8_t* escapes = data + s.escapeAt;
    uint64_t bit = rowBits[s.rowAt + t], escape = rowEscapes[s.rowAt + t];
    for (uint32_t c = 0; c < s.C; c++) {
        const uint32_t symbol = row[c];
        if (symbol == kEscape) {
            out[c] = (int32_t) load32(escapes + 4 * escape++);
            continue;
        }
        const int32_t h = (int32_t) symbol - kRange;
        const uint32_t shift = anchor ? ch[c].anchorShift : ch[c].deltaShift;
        if (shift == 0) {
            out[c] = h;
            continue;
        }
        // Raw bits run least significant first from byte 0; a value's at most 7 bits span at most two bytes, and the
        // scan's check keeps every one of them inside the raw bytes.
        const uint64_t byte = bit >> 3;
        const uint32_t word = (uint32_t) raw[byte] | (byte + 1 < s.rawBytes ? (uint32_t) raw[byte + 1] << 8 : 0u);
        const uint32_t low = (word >> (bit & 7)) & ((1u << shift) - 1);
        bit += shift;
        out[c] = (int32_t) (uint32_t) ((int64_t) h * ((int64_t) 1 << shift) + low - ((int64_t) 1 << (shift - 1)));
    }
}

/**
 * Step 5, one thread per (section, channel c): deltas undone down the channel, then each value dequantized. K that
 * turns back goes on as f32 bits in place (step 6); everything else is written out as f16.
 */
WEFT_HD void channelValues(const SectionPlan& s, const ChannelPlan* channels, uint32_t c, int32_t* values) {
    const ChannelPlan& ch = channels[s.channelAt + c];
    int32_t* column = values + s.valueAt + c;
    int32_t prev = 0;
    for (uint32_t t = 0; t < s.nTokens; t++) {
        int32_t v = column[(uint64_t) t * s.C];
        if (s.mode != 0) {
            const bool anchor = anchorRowOf(s, t);
            if (!anchor)
                v = wrapAdd(v, prev);
            if (s.mode == 1 || anchor)
                prev = v;
        }
        const float value = mulRn((float) wrapAdd(v, ch.mean), ch.step);
        if (s.rotate) {
            union { float f; int32_t i; } bits;
            bits.f = value;
            column[(uint64_t) t * s.C] = bits.i;
        } else {
            s.out[(uint64_t) t * s.rowStride + (uint64_t) c * s.colStride] = halfBits(value);
        }
    }
}

/**
 * Step 6, one thread per (K section, row t, head): the head turned back to its position (`rotation`: per token, the
 * cosines of its nRot / 2 pairs, then their sines) and written out as f16, dims past nRot as they are.
 */
WEFT_HD void rotateHead(const SectionPlan& s, const int32_t* values, const float* rotation, uint32_t t, uint32_t head) {
    union { int32_t i; float f; } a, b;
    const int32_t* row = values + s.valueAt + (uint64_t) t * s.C + (uint64_t) head * s.headDim;
    uint16_t* out = s.out + (uint64_t) t * s.rowStride;
    const uint32_t pairs = s.nRot / 2;
    const float* cosines = rotation + (uint64_t) t * s.nRot;
    const float* sines = cosines + pairs;
    const uint32_t first = head * s.headDim;
    for (uint32_t i = 0; i < pairs; i++) {
        const uint32_t i0 = s.ropeKind == 2 ? i : 2 * i, i1 = s.ropeKind == 2 ? i + pairs : 2 * i + 1;
        a.i = row[i0];
        b.i = row[i1];
        const float cs = cosines[i], sn = sines[i];
        out[(uint64_t) (first + i0) * s.colStride] = halfBits(subRn(mulRn(a.f, cs), mulRn(b.f, sn)));
        out[(uint64_t) (first + i1) * s.colStride] = halfBits(addRn(mulRn(a.f, sn), mulRn(b.f, cs)));
    }
    for (uint32_t d = s.nRot; d < s.headDim; d++) {
        a.i = row[d];
        out[(uint64_t) (first + d) * s.colStride] = halfBits(a.f);
    }
}

} // namespace weft_codec::parallel
