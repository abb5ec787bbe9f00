// The KV codec's decoder: a layer's checksum, then per tensor its channels' parameters and the rANS, raw-bit and
// escape streams back into f16 rows (K rotated back to its positions); decodeAll spreads layers over threads.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>

#include "half.h"
#include "kv_codec_detail.h"
#include "thread_pool.h"

namespace weft_codec {

using namespace detail;

namespace {

struct ChannelDecode {
    const uint32_t* table;
    uint32_t shift;
    int32_t mean;  // in steps
    float step;
};

inline float dequantize(const ChannelDecode& d, int32_t v) {
    return (float) (int32_t) ((uint32_t) v + (uint32_t) d.mean) * d.step;
}

struct StreamState {
    uint32_t x[4];
    const uint8_t* rp;
    const uint8_t* rEnd;
    const uint8_t* bp;
    const uint8_t* bEnd;
    const uint8_t* ep;
    const uint8_t* eEnd;
    uint64_t bitBuffer = 0;
    uint32_t bitCount = 0;
    uint64_t bitsUsed = 0;
    bool overrun = false;
};

// One value: the rANS symbol, then its raw low bits or its escape. `Shifts` false: no channel of the row has low bits.
template <bool Shifts>
inline int32_t decodeValue(StreamState& st, uint32_t& x, const ChannelDecode& d) {
    const uint32_t e = d.table[x & (kScale - 1)];
    x = (e >> 18) * (x >> kScaleBits) + ((e >> 6) & (kScale - 1));
    if (x < kRansL) {
        if (st.rp + 2 <= st.rEnd) {
            x = (x << 16) | st.rp[0] | ((uint32_t) st.rp[1] << 8);
            st.rp += 2;
        } else {
            st.overrun = true;
        }
    }
    const uint32_t s = e & 63;
    if (__builtin_expect(s == kEscape, 0)) {
        if (st.ep == st.eEnd) {
            st.overrun = true;
            return 0;
        }
        const int32_t v = (int32_t) get32(st.ep);
        st.ep += 4;
        return v;
    }
    const int32_t h = (int32_t) s - kRange;
    if (!Shifts)
        return h;
    const uint32_t k = d.shift;
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

// One token's row: values into `ints` (the quantized integers, delta undone), then dequantized into `row`.
template <bool Shifts>
void decodeRow(StreamState& st, uint32_t& j, const ChannelDecode* params, uint32_t C, bool anchor, uint32_t mode, int32_t* prev,
        float* row) {
    uint32_t c = 0;
    if (j == 0) {
        uint32_t x0 = st.x[0], x1 = st.x[1], x2 = st.x[2], x3 = st.x[3];
        for (; c + 4 <= C; c += 4) {
            const int32_t v0 = decodeValue<Shifts>(st, x0, params[c]);
            const int32_t v1 = decodeValue<Shifts>(st, x1, params[c + 1]);
            const int32_t v2 = decodeValue<Shifts>(st, x2, params[c + 2]);
            const int32_t v3 = decodeValue<Shifts>(st, x3, params[c + 3]);
            if (mode == 0) {
                row[c] = dequantize(params[c], v0);
                row[c + 1] = dequantize(params[c + 1], v1);
                row[c + 2] = dequantize(params[c + 2], v2);
                row[c + 3] = dequantize(params[c + 3], v3);
            } else {
                const int32_t v[4] = {v0, v1, v2, v3};
                for (uint32_t i = 0; i < 4; i++) {
                    int32_t q = anchor ? v[i] : (int32_t) ((uint32_t) v[i] + (uint32_t) prev[c + i]);
                    if (mode == 1 || anchor)
                        prev[c + i] = q;
                    row[c + i] = dequantize(params[c + i], q);
                }
            }
        }
        st.x[0] = x0;
        st.x[1] = x1;
        st.x[2] = x2;
        st.x[3] = x3;
    }
    for (; c < C; c++) {
        int32_t v = decodeValue<Shifts>(st, st.x[j], params[c]);
        j = (j + 1) & 3;
        if (mode != 0) {
            if (!anchor)
                v = (int32_t) ((uint32_t) v + (uint32_t) prev[c]);
            if (mode == 1 || anchor)
                prev[c] = v;
        }
        row[c] = dequantize(params[c], v);
    }
}

// Decodes one section of `size` bytes; output element (t, c) at out[t * rowStride + c * colStride].
Error decodeTensor(const uint8_t* p, size_t size, uint32_t nTokens, uint32_t C, uint16_t* out, size_t rowStride, size_t colStride,
        const RopeSpec* rope, const float* rotation, std::string& detail) {
    const Tables& t = tables();
    if (size < kSectionHead)
        return fail(detail, Error::corrupt, "section shorter than its head");
    const uint32_t mode = p[0], group = p[1];
    if (mode > 2 || (mode == 2 && group == 0) || get16(p + 2) != 0)
        return fail(detail, Error::corrupt, "unknown section mode " + std::to_string(mode));
    const uint64_t ransBytes = get32(p + 4), rawBytes = get32(p + 8), escapes = get32(p + 12);
    const uint64_t perChannel = mode == 0 ? 4 : 5;
    const uint64_t need = kSectionHead + perChannel * C + ransBytes + rawBytes + escapes * 4;
    if (need != size)
        return fail(detail, Error::corrupt, "section sizes add up to " + std::to_string(need) + " bytes, not " + std::to_string(size));
    if (ransBytes < 16 || ransBytes % 2 != 0)
        return fail(detail, Error::corrupt, "invalid rANS stream length");
    if (escapes > (uint64_t) nTokens * C)
        return fail(detail, Error::corrupt, "more escapes than values");

    float base;
    std::memcpy(&base, p + 16, 4);
    if (!std::isfinite(base) || !(base > 0) || base > 1e6f)
        return fail(detail, Error::corrupt, "invalid base step");
    std::vector<ChannelDecode> anchorParams(C), deltaParams(C);
    bool anchorShifts = false, deltaShifts = false;
    const uint8_t* params = p + kSectionHead;
    for (uint32_t c = 0; c < C; c++, params += perChannel) {
        const int32_t mean = (int16_t) get16(params);
        const float step = base * t.stepScale[params[2]];
        const uint32_t cls = params[3] & 31, shift = params[3] >> 5;
        const uint32_t dcls = mode ? params[4] & 31 : cls, dshift = mode ? params[4] >> 5 : shift;
        if (!std::isfinite(step) || !(step > 0))
            return fail(detail, Error::corrupt, "channel " + std::to_string(c) + " has invalid parameters");
        anchorParams[c] = ChannelDecode{t.table[cls].slot, shift, mean, step};
        deltaParams[c] = ChannelDecode{t.table[dcls].slot, dshift, mean, step};
        anchorShifts |= shift != 0;
        deltaShifts |= dshift != 0;
    }
    StreamState st;
    st.rp = params;
    st.rEnd = st.rp + ransBytes;
    st.bp = st.rEnd;
    st.bEnd = st.bp + rawBytes;
    st.ep = st.bEnd;
    st.eEnd = st.ep + escapes * 4;
    for (int j = 0; j < 4; j++, st.rp += 4) {
        st.x[j] = get32(st.rp);
        if (st.x[j] < kRansL)
            return fail(detail, Error::corrupt, "invalid rANS state");
    }

    std::vector<int32_t> prev(C, 0);
    std::vector<float> row(C);
    std::vector<uint16_t> halves(colStride == 1 ? 0 : C);
    uint32_t j = 0;
    for (uint32_t tok = 0; tok < nTokens; tok++) {
        const bool anchor = mode == 0 || (mode == 1 ? tok == 0 : tok % group == 0);
        const ChannelDecode* rowParams = anchor ? anchorParams.data() : deltaParams.data();
        if (anchor ? anchorShifts : deltaShifts)
            decodeRow<true>(st, j, rowParams, C, anchor, mode, prev.data(), row.data());
        else
            decodeRow<false>(st, j, rowParams, C, anchor, mode, prev.data(), row.data());
        if (st.overrun)
            return fail(detail, Error::corrupt, "stream ends before its values");
        if (rotation != nullptr)
            rotateRow(row.data(), C, *rope, rotation + (size_t) tok * (rope->nRot / 2) * 2, 1);
        if (colStride == 1) {
            floatsToHalves(row.data(), out + (size_t) tok * rowStride, C);
        } else {
            floatsToHalves(row.data(), halves.data(), C);
            for (uint32_t c = 0; c < C; c++)
                out[(size_t) tok * rowStride + (size_t) c * colStride] = halves[c];
        }
    }
    if (st.rp != st.rEnd || st.ep != st.eEnd || st.bitsUsed > rawBytes * 8 || st.bitsUsed + 8 <= rawBytes * 8 || st.x[0] != kRansL ||
        st.x[1] != kRansL || st.x[2] != kRansL || st.x[3] != kRansL)
        return fail(detail, Error::corrupt, "stream does not end where its values do");
    return Error::none;
}

// Sections of a layer: K's length comes from its own head; V takes the rest.
Error sectionLength(const uint8_t* p, size_t size, uint32_t C, uint64_t& length, std::string& detail) {
    if (size < kSectionHead)
        return fail(detail, Error::corrupt, "section shorter than its head");
    const uint64_t perChannel = p[0] == 0 ? 4 : 5;
    length = kSectionHead + perChannel * C + (uint64_t) get32(p + 4) + get32(p + 8) + (uint64_t) get32(p + 12) * 4;
    if (length > size)
        return fail(detail, Error::corrupt, "K section runs past its layer");
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
