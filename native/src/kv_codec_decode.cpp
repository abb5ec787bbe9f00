// The KV codec's decoder: a layer's checksum, then per tensor its channels' parameters and the rANS, raw-bit and
// escape streams back into f16 rows (K rotated back to its positions); decodeAll spreads layers over threads.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstddef>
#include <cstdlib>
#include <cstring>

#include "half.h"
#include "kv_codec_detail.h"
#include "thread_pool.h"

namespace weft_codec {

using namespace detail;

namespace {

// Raw low bits and escapes, read in value order (a row's values after its symbols).
struct ValueStreams {
    const uint8_t* bp;
    const uint8_t* bEnd;
    const uint8_t* ep;
    const uint8_t* eEnd;
    uint64_t bitBuffer = 0;
    uint32_t bitCount = 0;
    uint64_t bitsUsed = 0;
    bool overrun = false;
};

// The rANS states, each reading its own stream.
struct RansStates {
    uint32_t x[kMaxStates];
    const uint8_t* rp[kMaxStates];
    const uint8_t* rEnd[kMaxStates];
    uint32_t overrun = 0;
};

const uint8_t kZeroWord[2] = {0, 0};

// One symbol of one state. Renormalization is branch-free: a branch here is taken about once in eight symbols, at
// random, and its mispredictions cost more than the work. Past its stream's end a state reads zeros and says so.
inline uint32_t ransSymbol(uint32_t& x, const uint8_t*& rp, const uint8_t* rEnd, const uint32_t* table, uint32_t& overrun) {
    const uint32_t e = table[x & (kScale - 1)];
    x = (e >> 18) * (x >> kScaleBits) + ((e >> 6) & (kScale - 1));
    const uint32_t need = x < kRansL;
    const uint32_t room = rEnd - rp >= 2;
    const uint8_t* src = room ? rp : kZeroWord;
    const uint32_t word = (uint32_t) src[0] | ((uint32_t) src[1] << 8);
    const uint32_t take = need & room;
    overrun |= need & (room ^ 1);
    const uint32_t mask = 0u - take;
    x = (x & ~mask) | (((x << 16) | word) & mask);
    rp += 2 * take;
    return e & 63;
}

// The same where every state is known to have a word left: no bounds check (most rows).
inline uint32_t ransSymbolInBounds(uint32_t& x, const uint8_t*& rp, const uint32_t* table) {
    const uint32_t e = table[x & (kScale - 1)];
    x = (e >> 18) * (x >> kScaleBits) + ((e >> 6) & (kScale - 1));
    const uint32_t word = (uint32_t) rp[0] | ((uint32_t) rp[1] << 8);
    const bool need = x < kRansL;
    x = need ? (x << 16) | word : x;
    rp += need ? 2 : 0;
    return e & 63;
}

#if (defined(__x86_64__) || defined(_M_X64)) && (defined(__GNUC__) || defined(__clang__))
#define WEFT_CODEC_AVX2 1
// One AVX2 step of 8 states: the same arithmetic as ransSymbolInBounds, lane by lane, with one gather for the 8 table
// entries and one for the 8 streams' next words (read from 2 bytes before each state's position, so no lane reads
// past its stream's end).
__attribute__((target("avx2"))) inline void ransStepAvx2(__m256i& vx, __m256i& vpos, const int* slots, const int* words,
        const int32_t* tableOffsets, uint8_t* symbols) {
    const __m256i slotMask = _mm256_set1_epi32((int) (kScale - 1));
    const __m256i index = _mm256_add_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(tableOffsets)), _mm256_and_si256(vx, slotMask));
    const __m256i e = _mm256_i32gather_epi32(slots, index, 4);
    const __m256i bias = _mm256_and_si256(_mm256_srli_epi32(e, 6), slotMask);
    vx = _mm256_add_epi32(_mm256_mullo_epi32(_mm256_srli_epi32(e, 18), _mm256_srli_epi32(vx, kScaleBits)), bias);
    const __m256i need = _mm256_cmpeq_epi32(_mm256_srli_epi32(vx, 16), _mm256_setzero_si256());
    const __m256i word = _mm256_srli_epi32(_mm256_i32gather_epi32(words, vpos, 1), 16);
    vx = _mm256_blendv_epi8(vx, _mm256_or_si256(_mm256_slli_epi32(vx, 16), word), need);
    vpos = _mm256_sub_epi32(vpos, _mm256_add_epi32(need, need));
    const __m256i s = _mm256_and_si256(e, _mm256_set1_epi32(63));
    const __m128i s16 = _mm_packus_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
    _mm_storel_epi64(reinterpret_cast<__m128i*>(symbols), _mm_packus_epi16(s16, s16));
}

// The in-bounds loop with the 16 states as two AVX2 vectors, whose steps do not wait on each other.
__attribute__((target("avx2")))
void rowSymbolsAvx2(uint32_t* x, const uint8_t** rp, const uint8_t* streamBase, const int32_t* tableOffsets, uint32_t C, uint8_t* symbols) {
    const int* slots = reinterpret_cast<const int*>(tables().table[0].slot);
    const int* words = reinterpret_cast<const int*>(streamBase - 2);
    alignas(32) int32_t pos[kMaxStates];
    for (uint32_t k = 0; k < kMaxStates; k++)
        pos[k] = (int32_t) (rp[k] - streamBase);
    __m256i xa = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x)), xb = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + 8));
    __m256i pa = _mm256_load_si256(reinterpret_cast<const __m256i*>(pos)), pb = _mm256_load_si256(reinterpret_cast<const __m256i*>(pos + 8));
    for (uint32_t c = 0; c + kMaxStates <= C; c += kMaxStates) {
        ransStepAvx2(xa, pa, slots, words, tableOffsets + c, symbols + c);
        ransStepAvx2(xb, pb, slots, words, tableOffsets + c + 8, symbols + c + 8);
    }
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(x), xa);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(x + 8), xb);
    _mm256_store_si256(reinterpret_cast<__m256i*>(pos), pa);
    _mm256_store_si256(reinterpret_cast<__m256i*>(pos + 8), pb);
    for (uint32_t k = 0; k < kMaxStates; k++)
        rp[k] = streamBase + pos[k];
}

// WEFT_NO_AVX2=1 forces the scalar loop, so the tests can check it on a machine that has AVX2.
bool cpuHasAvx2() {
    static const bool has = std::getenv("WEFT_NO_AVX2") == nullptr && __builtin_cpu_supports("avx2");
    return has;
}
#endif

// A row's symbols, S states. `j` is the state of the row's first value (value i of the tensor is state i % S).
template <uint32_t S>
void rowSymbols(RansStates& r, uint32_t& j, const uint32_t* const* tables, const int32_t* tableOffsets, const uint8_t* streamBase, uint32_t C,
        uint8_t* symbols) {
    uint32_t c = 0;
    if (j == 0) {
        // A state reads at most one word per symbol: when each has a word per symbol of the row left, the row needs
        // no bounds checks.
        const ptrdiff_t perState = 2 * (ptrdiff_t) ((C + S - 1) / S);
        bool room = true;
        for (uint32_t k = 0; k < S; k++)
            room = room && r.rEnd[k] - r.rp[k] >= perState;
        uint32_t x[S];
        const uint8_t* rp[S];
        for (uint32_t k = 0; k < S; k++) {
            x[k] = r.x[k];
            rp[k] = r.rp[k];
        }
#ifdef WEFT_CODEC_AVX2
        if (S == kMaxStates && room && cpuHasAvx2()) {
            rowSymbolsAvx2(x, rp, streamBase, tableOffsets, C, symbols);
            c = C / S * S;
        } else
#else
        (void) tableOffsets;
        (void) streamBase;
#endif
        if (room) {
            for (; c + S <= C; c += S) {
#pragma GCC unroll 16
                for (uint32_t k = 0; k < S; k++)
                    symbols[c + k] = (uint8_t) ransSymbolInBounds(x[k], rp[k], tables[c + k]);
            }
        } else {
            for (; c + S <= C; c += S) {
#pragma GCC unroll 16
                for (uint32_t k = 0; k < S; k++)
                    symbols[c + k] = (uint8_t) ransSymbol(x[k], rp[k], r.rEnd[k], tables[c + k], r.overrun);
            }
        }
        for (uint32_t k = 0; k < S; k++) {
            r.x[k] = x[k];
            r.rp[k] = rp[k];
        }
    }
    for (; c < C; c++) {
        symbols[c] = (uint8_t) ransSymbol(r.x[j], r.rp[j], r.rEnd[j], tables[c], r.overrun);
        j = (j + 1) % S;
    }
}

// Whether a row holds an escape (a loop the compiler vectorizes).
bool anyEscape(const uint8_t* symbols, uint32_t C) {
    uint32_t escaped = 0;
    for (uint32_t c = 0; c < C; c++)
        escaped |= symbols[c] == kEscape;
    return escaped != 0;
}

// A symbol's value with its raw low bits or its escape.
inline int32_t valueOf(ValueStreams& st, uint32_t s, uint32_t k) {
    if (s == kEscape) {
        if (st.ep == st.eEnd) {
            st.overrun = true;
            return 0;
        }
        const int32_t v = (int32_t) get32(st.ep);
        st.ep += 4;
        return v;
    }
    const int32_t h = (int32_t) s - kRange;
    if (k == 0)
        return h;
    if (st.bitCount < k) {
        while (st.bitCount <= 56) {
            st.bitBuffer |= (uint64_t) (st.bp < st.bEnd ? *st.bp++ : 0) << st.bitCount;
            st.bitCount += 8;
        }
    }
    const uint32_t low = (uint32_t) (st.bitBuffer & ((1ull << k) - 1));
    st.bitBuffer >>= k;
    st.bitCount -= k;
    st.bitsUsed += k;
    return (int32_t) (uint32_t) ((int64_t) h * ((int64_t) 1 << k) + low - ((int64_t) 1 << (k - 1)));
}

inline int32_t wrapAdd(int32_t a, int32_t b) {
    return (int32_t) ((uint32_t) a + (uint32_t) b);
}

// Per channel: its mean (in steps), its step, and its anchor and delta rows' tables and raw-bit counts.
struct SectionParams {
    std::vector<int32_t> mean;
    std::vector<float> step;
    std::vector<const uint32_t*> anchorTables, deltaTables;
    std::vector<int32_t> anchorOffsets, deltaOffsets;  // the same as indexes from tables().table[0].slot
    std::vector<uint8_t> anchorShift, deltaShift;
    bool anchorShifts = false, deltaShifts = false;
};

// A row's values (delta undone, `prev` kept) dequantized into `row`. Rows with no raw bits and no escape (most of
// them at the compact levels) take loops the compiler vectorizes.
void rowValues(ValueStreams& st, const uint8_t* symbols, const SectionParams& sp, uint32_t C, bool anchor, uint32_t mode, bool plain,
        int32_t* prev, float* row) {
    const int32_t* mean = sp.mean.data();
    const float* step = sp.step.data();
    if (plain) {
        if (mode == 0) {
            for (uint32_t c = 0; c < C; c++)
                row[c] = (float) ((int32_t) symbols[c] - kRange + mean[c]) * step[c];
        } else if (anchor) {
            for (uint32_t c = 0; c < C; c++) {
                const int32_t q = (int32_t) symbols[c] - kRange;
                prev[c] = q;
                row[c] = (float) wrapAdd(q, mean[c]) * step[c];
            }
        } else if (mode == 1) {
            for (uint32_t c = 0; c < C; c++) {
                const int32_t q = wrapAdd(prev[c], (int32_t) symbols[c] - kRange);
                prev[c] = q;
                row[c] = (float) wrapAdd(q, mean[c]) * step[c];
            }
        } else {
            for (uint32_t c = 0; c < C; c++)
                row[c] = (float) wrapAdd(wrapAdd(prev[c], (int32_t) symbols[c] - kRange), mean[c]) * step[c];
        }
        return;
    }
    const uint8_t* shift = anchor ? sp.anchorShift.data() : sp.deltaShift.data();
    for (uint32_t c = 0; c < C; c++) {
        int32_t v = valueOf(st, symbols[c], shift[c]);
        if (mode != 0) {
            if (!anchor)
                v = wrapAdd(v, prev[c]);
            if (mode == 1 || anchor)
                prev[c] = v;
        }
        row[c] = (float) wrapAdd(v, mean[c]) * step[c];
    }
}

// Decodes one section of `size` bytes; output element (t, c) at out[t * rowStride + c * colStride].
Error decodeTensor(const uint8_t* p, size_t size, uint32_t nTokens, uint32_t C, uint16_t* out, size_t rowStride, size_t colStride,
        const RopeSpec* rope, const float* rotation, std::string& detail) {
    const Tables& t = tables();
    SectionHead head;
    std::vector<SectionChannel> channels;
    const Error parsed = parseSection(p, size, nTokens, C, head, channels, detail);
    if (parsed != Error::none)
        return parsed;
    const uint32_t mode = head.mode, group = head.group, S = head.S;
    SectionParams sp;
    sp.mean.resize(C);
    sp.step.resize(C);
    sp.anchorTables.resize(C);
    sp.deltaTables.resize(C);
    sp.anchorOffsets.resize(C);
    sp.deltaOffsets.resize(C);
    sp.anchorShift.resize(C);
    sp.deltaShift.resize(C);
    for (uint32_t c = 0; c < C; c++) {
        const SectionChannel& code = channels[c];
        sp.mean[c] = code.mean;
        sp.step[c] = code.step;
        sp.anchorTables[c] = t.table[code.anchorClass].slot;
        sp.deltaTables[c] = t.table[code.deltaClass].slot;
        sp.anchorOffsets[c] = (int32_t) (t.table[code.anchorClass].slot - t.table[0].slot);
        sp.deltaOffsets[c] = (int32_t) (t.table[code.deltaClass].slot - t.table[0].slot);
        sp.anchorShift[c] = code.anchorShift;
        sp.deltaShift[c] = code.deltaShift;
    }
    sp.anchorShifts = head.anchorShifts;
    sp.deltaShifts = head.deltaShifts;
    RansStates r;
    for (uint32_t k = 0; k < S; k++) {
        r.x[k] = get32(p + head.streamOffset[k]);
        r.rp[k] = p + head.streamOffset[k] + 4;
        r.rEnd[k] = p + head.streamOffset[k] + head.streamBytes[k];
    }
    const uint64_t rawBytes = head.rawBytes;
    ValueStreams st;
    st.bp = p + head.rawOffset;
    st.bEnd = st.bp + rawBytes;
    st.ep = st.bEnd;
    st.eEnd = st.ep + head.escapes * 4;

    std::vector<int32_t> prev(C, 0);
    std::vector<float> row(C);
    std::vector<uint8_t> symbols(C);
    std::vector<uint16_t> halves(colStride == 1 ? 0 : C);
    const uint32_t rotationStride = rope != nullptr ? rope->nRot : 0;  // cos and sin of each pair, per token
    uint32_t j = 0;
    for (uint32_t tok = 0; tok < nTokens; tok++) {
        const bool anchor = anchorRow(mode, group, tok);
        (S == kMaxStates ? rowSymbols<kMaxStates> : rowSymbols<kFewStates>)(r, j, anchor ? sp.anchorTables.data() : sp.deltaTables.data(), anchor ? sp.anchorOffsets.data() : sp.deltaOffsets.data(), p, C,
            symbols.data());
        const bool plain = !(anchor ? sp.anchorShifts : sp.deltaShifts) && !anyEscape(symbols.data(), C);
        rowValues(st, symbols.data(), sp, C, anchor, mode, plain, prev.data(), row.data());
        if (r.overrun || st.overrun)
            return fail(detail, Error::corrupt, "stream ends before its values");
        if (rotation != nullptr)
            rotateRow(row.data(), C, *rope, rotation + (size_t) tok * rotationStride, 1);
        if (colStride == 1) {
            floatsToHalves(row.data(), out + (size_t) tok * rowStride, C);
        } else {
            floatsToHalves(row.data(), halves.data(), C);
            for (uint32_t c = 0; c < C; c++)
                out[(size_t) tok * rowStride + (size_t) c * colStride] = halves[c];
        }
    }
    bool ended = st.ep == st.eEnd && st.bitsUsed <= rawBytes * 8 && st.bitsUsed + 8 > rawBytes * 8;
    for (uint32_t k = 0; k < S; k++)
        ended = ended && r.rp[k] == r.rEnd[k] && r.x[k] == kRansL;
    if (!ended)
        return fail(detail, Error::corrupt, "stream does not end where its values do");
    return Error::none;
}

} // namespace

Error decodeLayer(const uint8_t* data, size_t size, const Header& header, uint32_t il, const LayerOut& out, std::string& detail) {
    (void) size;
    const LayerInfo& info = header.layers[il];
    const uint8_t* p = data + header.headerBytes + info.offset;
    if (crc32(p, info.bytes) != info.crc)
        return fail(detail, Error::checksum, "layer " + std::to_string(il) + " checksum mismatch");
    uint64_t kBytes;
    Error error = sectionLength(p, info.bytes, info.nEmbdK, kBytes, detail);
    if (error == Error::none)
        error = decodeTensor(p, kBytes, header.nTokens, info.nEmbdK, out.k, info.nEmbdK, 1, &header.rope,
            header.rotation.empty() ? nullptr : header.rotation.data(), detail);
    if (error == Error::none)
        error = header.vTrans()
            ? decodeTensor(p + kBytes, info.bytes - kBytes, header.nTokens, info.nEmbdV, out.v, 1, header.nTokens, nullptr, nullptr, detail)
            : decodeTensor(p + kBytes, info.bytes - kBytes, header.nTokens, info.nEmbdV, out.v, info.nEmbdV, 1, nullptr, nullptr, detail);
    if (error != Error::none)
        detail = "layer " + std::to_string(il) + ": " + detail;
    return error;
}

Error decodeAll(const uint8_t* data, size_t size, const Header& header, const std::vector<LayerOut>& out, uint32_t threads, std::string& detail) {
    std::vector<Error> errors(header.nLayer, Error::none);
    std::vector<std::string> details(header.nLayer);
    std::atomic<bool> failed{false};
    forEachOnThreads(header.nLayer, threads, [&](size_t il, std::vector<float>&) {
        if (failed)
            return;
        errors[il] = decodeLayer(data, size, header, (uint32_t) il, out[il], details[il]);
        if (errors[il] != Error::none)
            failed = true;
    });
    for (uint32_t il = 0; il < header.nLayer; il++)
        if (errors[il] != Error::none) {
            detail = details[il];
            return errors[il];
        }
    return Error::none;
}

} // namespace weft_codec
