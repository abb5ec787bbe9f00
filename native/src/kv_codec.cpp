#include "kv_codec.h"

#include <algorithm>
#include <atomic>
#include <climits>
#include <cmath>
#include <cstring>
#include <mutex>
#include <stdexcept>
#include <thread>

#include "half.h"
#include "thread_pool.h"

namespace weft_codec {

namespace {

// ---------------------------------------------------------------------------------------------------------------
// Entropy tables. A channel's symbols are h in [-15, 15] (the quantized value, or its delta, above its raw low bits)
// and an escape. Each table is a two-sided geometric distribution of a given mean |h| (32 classes, log-spaced): the
// encoder picks per channel the class that codes it in the fewest bits, so a table costs one byte, not a histogram.

constexpr uint32_t kScaleBits = 12;
constexpr uint32_t kScale = 1u << kScaleBits;
constexpr uint32_t kRansL = 1u << 16;  // 32-bit state, 16-bit renormalization: at most one read per symbol
constexpr int kRange = 15;
constexpr uint32_t kSymbols = 2 * kRange + 2;
constexpr uint32_t kEscape = kSymbols - 1;
constexpr uint32_t kClasses = 32;
constexpr uint32_t kMaxShift = 7;  // raw low bits per value (3 bits of the channel's code byte)
constexpr uint32_t kGroup = 16;

struct Table {
    uint16_t freq[kSymbols];
    uint16_t cum[kSymbols];
    float cost[kSymbols];  // bits
    // Per slot: symbol (bits 0-5), slot - cum (bits 6-17), freq (bits 18-30): one load per decoded symbol.
    uint32_t slot[kScale];
};

struct Tables {
    Table table[kClasses];
    float stepScale[256];  // a channel's step is the section's base step times stepScale[code]: 2^((code - 128) / 8)
    float minBits;  // the fewest bits any value can cost (the likeliest symbol of the narrowest table)
    float classMean[kClasses];
    float halfToFloat[65536];
};

const Tables& tables() {
    static const Tables* built = [] {
        Tables* t = new Tables();
        for (uint32_t h = 0; h < 65536; h++)
            t->halfToFloat[h] = weft_half::halfToFloat((uint16_t) h);
        for (uint32_t i = 0; i < kClasses; i++) {
            const double target = 0.01 * std::pow(1.22, (double) i);
            t->classMean[i] = (float) target;
            auto meanOf = [](double r) {
                double sum = 0, weighted = 0;
                for (int h = -kRange; h <= kRange; h++) {
                    const double p = std::pow(r, std::abs(h));
                    sum += p;
                    weighted += p * std::abs(h);
                }
                return weighted / sum;
            };
            double lo = 1e-9, hi = 0.999999;
            for (int it = 0; it < 100; it++) {
                const double mid = (lo + hi) / 2;
                (meanOf(mid) < target ? lo : hi) = mid;
            }
            const double r = (lo + hi) / 2;
            double p[kSymbols], sum = 0;
            for (int h = -kRange; h <= kRange; h++)
                sum += p[h + kRange] = std::pow(r, std::abs(h));
            Table& table = t->table[i];
            int32_t total = 0;
            const double budget = kScale - 1 - 2 * kRange;  // every symbol keeps at least 1; the escape has exactly 1
            for (int s = 0; s < 2 * kRange + 1; s++) {
                table.freq[s] = (uint16_t) (1 + std::floor(p[s] / sum * budget));
                total += table.freq[s];
            }
            table.freq[kEscape] = 1;
            total += 1;
            table.freq[kRange] = (uint16_t) (table.freq[kRange] + (int32_t) kScale - total);
            uint32_t cum = 0;
            for (uint32_t s = 0; s < kSymbols; s++) {
                table.cum[s] = (uint16_t) cum;
                table.cost[s] = (float) (kScaleBits - std::log2((double) table.freq[s]));
                for (uint32_t slot = cum; slot < cum + table.freq[s]; slot++)
                    table.slot[slot] = s | ((slot - cum) << 6) | ((uint32_t) table.freq[s] << 18);
                cum += table.freq[s];
            }
        }
        for (int code = 0; code < 256; code++)
            t->stepScale[code] = (float) std::pow(2.0, (code - 128) / 8.0);
        t->minBits = 32;
        for (uint32_t i = 0; i < kClasses; i++)
            for (uint32_t s = 0; s < kSymbols; s++)
                t->minBits = std::min(t->minBits, t->table[i].cost[s]);
        return t;
    }();
    return *built;
}

// Level: step = scale * layerFactor * spread^beta * tensorSpread^(1 - beta). Finer steps for the first layers
// (CacheGen keeps twice the levels for K in the first 10 of 32 layers and V in the first 2).
constexpr float kLevelScale[kLevelCount] = {0.04f, 0.12f, 0.3f, 0.55f, 0.9f, 2.3f};

float layerFactor(uint32_t layer, uint32_t nLayer, bool isK) {
    const uint32_t fine = isK ? (nLayer * 10 + 31) / 32 : (nLayer * 2 + 31) / 32;
    return layer < fine ? 0.6f : 1.0f;
}

// ---------------------------------------------------------------------------------------------------------------
// Little-endian bytes

void put16(std::vector<uint8_t>& out, uint16_t v) { out.push_back((uint8_t) v); out.push_back((uint8_t) (v >> 8)); }
void put32(std::vector<uint8_t>& out, uint32_t v) { for (int i = 0; i < 4; i++) out.push_back((uint8_t) (v >> (8 * i))); }
void put64(std::vector<uint8_t>& out, uint64_t v) { for (int i = 0; i < 8; i++) out.push_back((uint8_t) (v >> (8 * i))); }
void set32(uint8_t* p, uint32_t v) { for (int i = 0; i < 4; i++) p[i] = (uint8_t) (v >> (8 * i)); }
uint16_t get16(const uint8_t* p) { return (uint16_t) (p[0] | (p[1] << 8)); }
uint32_t get32(const uint8_t* p) { return (uint32_t) p[0] | ((uint32_t) p[1] << 8) | ((uint32_t) p[2] << 16) | ((uint32_t) p[3] << 24); }
uint64_t get64(const uint8_t* p) { return (uint64_t) get32(p) | ((uint64_t) get32(p + 4) << 32); }

const uint8_t kMagic[8] = {'W', 'E', 'F', 'T', 'K', 'V', 'Z', 0};
constexpr size_t kFixedHeader = 56;
constexpr size_t kLayerEntry = 32;
constexpr size_t kSectionHead = 20;

// ---------------------------------------------------------------------------------------------------------------
// RoPE

void rotationTable(const RopeSpec& rope, uint32_t nTokens, std::vector<float>& cs) {
    const uint32_t pairs = rope.nRot / 2;
    cs.resize((size_t) nTokens * pairs * 2);
    std::vector<double> freq(pairs);
    for (uint32_t i = 0; i < pairs; i++)
        freq[i] = rope.freqScale * std::pow((double) rope.freqBase, -2.0 * i / rope.nRot) / (rope.factors.empty() ? 1.0 : rope.factors[i]);
    for (uint32_t t = 0; t < nTokens; t++)
        for (uint32_t i = 0; i < pairs; i++) {
            const double angle = ((double) rope.firstPos + t) * freq[i];
            cs[((size_t) t * pairs + i) * 2] = (float) std::cos(angle);
            cs[((size_t) t * pairs + i) * 2 + 1] = (float) std::sin(angle);
        }
}

// Rotates every head of a K row by its position's angles (sign -1: back to position 0).
void rotateRow(float* row, uint32_t C, const RopeSpec& rope, const float* cs, float sign) {
    const uint32_t pairs = rope.nRot / 2;
    for (uint32_t head = 0; head + rope.headDim <= C; head += rope.headDim)
        for (uint32_t i = 0; i < pairs; i++) {
            const uint32_t a = head + (rope.kind == 1 ? 2 * i : i), b = rope.kind == 1 ? a + 1 : a + pairs;
            const float c = cs[2 * i], sn = sign * cs[2 * i + 1];
            const float x0 = row[a], x1 = row[b];
            row[a] = x0 * c - x1 * sn;
            row[b] = x0 * sn + x1 * c;
        }
}

size_t ropeBlockBytes(const RopeSpec& rope) {
    return rope.kind == 0 ? 0 : 28 + 4 * rope.factors.size();
}

// ---------------------------------------------------------------------------------------------------------------
// Encoder

struct ChannelCode {
    uint8_t cls, shift;
};

bool isAnchor(uint32_t mode, uint32_t t) {
    return mode == 0 || (mode == 1 ? t == 0 : t % kGroup == 0);
}

int32_t valueAt(const int32_t* q, uint32_t mode, uint32_t t, uint32_t c, uint32_t channels) {
    const int32_t here = q[(size_t) t * channels + c];
    if (isAnchor(mode, t))
        return here;
    const uint32_t base = mode == 1 ? t - 1 : t - t % kGroup;
    return (int32_t) ((uint32_t) here - (uint32_t) q[(size_t) base * channels + c]);
}

uint32_t shiftFor(double meanAbs) {
    uint32_t k = 0;
    while (k < kMaxShift && meanAbs / (double) (1u << k) > 3.0)
        k++;
    return k;
}

inline int32_t highPart(int32_t v, uint32_t k) {
    const int64_t rounded = (int64_t) v + (k ? (int64_t) 1 << (k - 1) : 0);
    return (int32_t) (rounded >> k);  // arithmetic shift: floor
}

struct TensorPlan {
    uint32_t mode = 0;
    std::vector<ChannelCode> anchor, delta;
    double bits = 0;
};

// Chooses shift and class per channel for one mode's anchor or delta rows and returns the estimated bits.
double planRows(const int32_t* q, uint32_t nTokens, uint32_t channels, uint32_t mode, bool anchorRows, std::vector<ChannelCode>& codes) {
    const Tables& t = tables();
    codes.assign(channels, ChannelCode{0, 0});
    std::vector<double> sumAbs(channels, 0.0);
    uint32_t rows = 0;
    for (uint32_t tok = 0; tok < nTokens; tok++) {
        if (isAnchor(mode, tok) != anchorRows)
            continue;
        rows++;
        for (uint32_t c = 0; c < channels; c++)
            sumAbs[c] += std::abs((double) valueAt(q, mode, tok, c, channels));
    }
    if (rows == 0)
        return 0;
    std::vector<uint32_t> hist((size_t) channels * kSymbols, 0);
    for (uint32_t c = 0; c < channels; c++)
        codes[c].shift = (uint8_t) shiftFor(sumAbs[c] / rows);
    for (uint32_t tok = 0; tok < nTokens; tok++) {
        if (isAnchor(mode, tok) != anchorRows)
            continue;
        for (uint32_t c = 0; c < channels; c++) {
            const int32_t h = highPart(valueAt(q, mode, tok, c, channels), codes[c].shift);
            hist[(size_t) c * kSymbols + (h < -kRange || h > kRange ? kEscape : (uint32_t) (h + kRange))]++;
        }
    }
    double bits = 0;
    for (uint32_t c = 0; c < channels; c++) {
        const uint32_t* hc = &hist[(size_t) c * kSymbols];
        double best = 1e300;
        for (uint32_t cls = 0; cls < kClasses; cls++) {
            double cost = 0;
            for (uint32_t s = 0; s < kSymbols; s++)
                cost += hc[s] * (double) t.table[cls].cost[s];
            if (cost < best) {
                best = cost;
                codes[c].cls = (uint8_t) cls;
            }
        }
        bits += best + (double) rows * codes[c].shift + hc[kEscape] * 32.0;
    }
    return bits;
}

void encodeTensor(const TensorIn& in, uint32_t nTokens, uint32_t layer, uint32_t nLayer, bool isK, const EncodeOptions& options,
        const float* rotation, std::vector<uint8_t>& out, uint32_t& modeChosen) {
    const Tables& t = tables();
    const uint32_t C = in.channels;
    const size_t n = (size_t) nTokens * C;

    // Per-channel mean and spread.
    std::vector<double> mean(C, 0.0), sq(C, 0.0);
    std::vector<float> x(n);
    for (uint32_t tok = 0; tok < nTokens; tok++)
        for (uint32_t c = 0; c < C; c++) {
            float value = t.halfToFloat[in.data[tok * in.rowStride + c * in.colStride]];
            if (!std::isfinite(value))
                value = 0;
            x[(size_t) tok * C + c] = value;
        }
    if (rotation != nullptr)
        for (uint32_t tok = 0; tok < nTokens; tok++)
            rotateRow(&x[(size_t) tok * C], C, options.rope, rotation + (size_t) tok * (options.rope.nRot / 2) * 2, -1);
    for (uint32_t tok = 0; tok < nTokens; tok++)
        for (uint32_t c = 0; c < C; c++)
            mean[c] += x[(size_t) tok * C + c];
    for (uint32_t c = 0; c < C; c++)
        mean[c] /= nTokens;
    for (size_t i = 0; i < n; i++) {
        const double d = x[i] - mean[i % C];
        sq[i % C] += d * d;
    }
    double tensorSq = 0;
    for (uint32_t c = 0; c < C; c++)
        tensorSq += sq[c] / nTokens;
    const double tensorSpread = std::sqrt(tensorSq / C);
    const double scale = kLevelScale[std::min(options.level, kLevelCount - 1)] * layerFactor(layer, nLayer, isK) *
        (isK ? options.kStepFactor : options.vStepFactor);
    const double beta = options.spreadExponent;

    // Steps: the section's base step times 2^(k/8) per channel (one byte); means: whole steps (two bytes).
    const float base = (float) std::min(std::max(scale * tensorSpread, 1.0 / 16384), 60000.0);
    std::vector<uint8_t> stepCode(C);
    std::vector<int16_t> meanSteps(C);
    std::vector<float> stepF(C);
    for (uint32_t c = 0; c < C; c++) {
        const double spread = std::sqrt(sq[c] / nTokens);
        const double step = std::max(scale * std::pow(spread, beta) * std::pow(tensorSpread, 1 - beta), 1.0 / 16384);
        stepCode[c] = (uint8_t) std::min(255.0, std::max(0.0, std::nearbyint(8 * std::log2(step / base)) + 128));
        stepF[c] = base * t.stepScale[stepCode[c]];
        meanSteps[c] = (int16_t) std::min(32767.0, std::max(-32768.0, std::nearbyint(mean[c] / stepF[c])));
    }

    std::vector<int32_t> q(n);
    for (size_t i = 0; i < n; i++) {
        const uint32_t c = (uint32_t) (i % C);
        const double v = std::nearbyint((double) x[i] / stepF[c]) - meanSteps[c];
        q[i] = (int32_t) std::max(-1e9, std::min(1e9, v));
    }
    std::vector<float>().swap(x);

    TensorPlan best;
    best.bits = 1e300;
    for (uint32_t mode = 0; mode < 3; mode++) {
        const uint32_t mask = (options.modeMask & 7) ? options.modeMask : 1;
        if (!(mask & (1u << mode)))
            continue;
        TensorPlan plan;
        plan.mode = mode;
        plan.bits = planRows(q.data(), nTokens, C, mode, true, plan.anchor);
        if (mode != 0)
            plan.bits += planRows(q.data(), nTokens, C, mode, false, plan.delta) + 16.0 * C;
        if (plan.bits < best.bits)
            best = std::move(plan);
    }
    const uint32_t mode = best.mode;
    modeChosen = mode;
    if (mode == 0)
        best.delta = best.anchor;

    // Forward pass: symbols, raw low bits and escapes in decode order.
    std::vector<uint8_t> symbols(n);
    uint64_t rawBits = 0;
    uint32_t escapes = 0;
    for (uint32_t tok = 0; tok < nTokens; tok++) {
        const std::vector<ChannelCode>& codes = isAnchor(mode, tok) ? best.anchor : best.delta;
        for (uint32_t c = 0; c < C; c++) {
            const int32_t h = highPart(valueAt(q.data(), mode, tok, c, C), codes[c].shift);
            if (h < -kRange || h > kRange)
                escapes++;
            else
                rawBits += codes[c].shift;
        }
    }
    const uint32_t rawBytes = (uint32_t) ((rawBits + 7) / 8);
    const size_t perChannel = mode == 0 ? 4 : 5;
    const size_t ransCapacity = n * 2 + 32;
    std::vector<uint8_t> rans(ransCapacity);
    std::vector<uint8_t> raw(rawBytes + 8, 0);
    std::vector<uint8_t> esc((size_t) escapes * 4);
    {
        uint64_t buffer = 0;
        uint32_t bits = 0;
        size_t rawAt = 0, escAt = 0;
        for (uint32_t tok = 0; tok < nTokens; tok++) {
            const std::vector<ChannelCode>& codes = isAnchor(mode, tok) ? best.anchor : best.delta;
            for (uint32_t c = 0; c < C; c++) {
                const int32_t v = valueAt(q.data(), mode, tok, c, C);
                const uint32_t k = codes[c].shift;
                const int32_t h = highPart(v, k);
                if (h < -kRange || h > kRange) {
                    symbols[(size_t) tok * C + c] = (uint8_t) kEscape;
                    set32(&esc[escAt], (uint32_t) v);
                    escAt += 4;
                    continue;
                }
                symbols[(size_t) tok * C + c] = (uint8_t) (h + kRange);
                if (k) {
                    const uint32_t low = (uint32_t) ((int64_t) v + ((int64_t) 1 << (k - 1)) - ((int64_t) h << k));
                    buffer |= (uint64_t) low << bits;
                    bits += k;
                    while (bits >= 8) {
                        raw[rawAt++] = (uint8_t) buffer;
                        buffer >>= 8;
                        bits -= 8;
                    }
                }
            }
        }
        if (bits)
            raw[rawAt++] = (uint8_t) buffer;
    }

    // rANS, 4 interleaved states, encoded backwards so the decoder reads forwards.
    uint8_t* end = rans.data() + ransCapacity;
    uint8_t* ptr = end;
    uint32_t state[4] = {kRansL, kRansL, kRansL, kRansL};
    for (size_t i = n; i-- > 0;) {
        const uint32_t tok = (uint32_t) (i / C), c = (uint32_t) (i % C);
        const std::vector<ChannelCode>& codes = isAnchor(mode, tok) ? best.anchor : best.delta;
        const Table& table = t.table[codes[c].cls];
        const uint32_t s = symbols[i];
        const uint32_t freq = table.freq[s];
        uint32_t& x = state[i & 3];
        const uint32_t xMax = ((kRansL >> kScaleBits) << 16) * freq;
        if (x >= xMax) {
            ptr -= 2;
            ptr[0] = (uint8_t) x;
            ptr[1] = (uint8_t) (x >> 8);
            x >>= 16;
        }
        x = ((x / freq) << kScaleBits) + (x % freq) + table.cum[s];
    }
    for (int j = 3; j >= 0; j--) {
        ptr -= 4;
        set32(ptr, state[j]);
    }
    const uint32_t ransBytes = (uint32_t) (end - ptr);

    out.push_back((uint8_t) mode);
    out.push_back((uint8_t) kGroup);
    put16(out, 0);
    put32(out, ransBytes);
    put32(out, rawBytes);
    put32(out, escapes);
    uint32_t baseBits;
    std::memcpy(&baseBits, &base, 4);
    put32(out, baseBits);
    out.reserve(out.size() + perChannel * C + ransBytes + rawBytes + esc.size());
    for (uint32_t c = 0; c < C; c++) {
        put16(out, (uint16_t) meanSteps[c]);
        out.push_back(stepCode[c]);
        out.push_back((uint8_t) (best.anchor[c].cls | (best.anchor[c].shift << 5)));
        if (mode != 0)
            out.push_back((uint8_t) (best.delta[c].cls | (best.delta[c].shift << 5)));
    }
    out.insert(out.end(), ptr, end);
    out.insert(out.end(), raw.begin(), raw.begin() + rawBytes);
    out.insert(out.end(), esc.begin(), esc.end());
}

// ---------------------------------------------------------------------------------------------------------------
// Decoder

struct ChannelDecode {
    const uint32_t* table;
    uint32_t shift;
    int32_t mean;  // in steps
    float step;
};

inline float dequantize(const ChannelDecode& d, int32_t v) {
    return (float) (int32_t) ((uint32_t) v + (uint32_t) d.mean) * d.step;
}

Error fail(std::string& detail, Error error, const std::string& what) {
    detail = what;
    return error;
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

const char* errorReason(Error error) {
    switch (error) {
        case Error::none: return "none";
        case Error::truncated: return "truncated";
        case Error::badMagic: return "bad-magic";
        case Error::wrongVersion: return "wrong-version";
        case Error::badHeader: return "bad-header";
        case Error::badSizes: return "bad-sizes";
        case Error::wrongModel: return "wrong-model";
        case Error::wrongShape: return "wrong-shape";
        case Error::checksum: return "checksum";
        case Error::corrupt: return "corrupt";
    }
    return "corrupt";
}

uint32_t crc32(const uint8_t* data, size_t size, uint32_t crc) {
    static const auto* table = [] {
        auto* t = new uint32_t[8][256];
        for (uint32_t i = 0; i < 256; i++) {
            uint32_t c = i;
            for (int k = 0; k < 8; k++)
                c = c & 1 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
            t[0][i] = c;
        }
        for (uint32_t i = 0; i < 256; i++)
            for (int s = 1; s < 8; s++)
                t[s][i] = (t[s - 1][i] >> 8) ^ t[0][t[s - 1][i] & 0xff];
        return t;
    }();
    uint32_t c = ~crc;
    while (size >= 8) {
        const uint32_t a = c ^ get32(data), b = get32(data + 4);
        c = table[7][a & 0xff] ^ table[6][(a >> 8) & 0xff] ^ table[5][(a >> 16) & 0xff] ^ table[4][a >> 24] ^ table[3][b & 0xff] ^
            table[2][(b >> 8) & 0xff] ^ table[1][(b >> 16) & 0xff] ^ table[0][b >> 24];
        data += 8;
        size -= 8;
    }
    while (size--)
        c = table[0][(c ^ *data++) & 0xff] ^ (c >> 8);
    return ~c;
}

std::vector<uint8_t> encode(uint32_t nTokens, const std::vector<LayerIn>& layers, const EncodeOptions& options, EncodeStats* stats) {
    if (nTokens == 0 || nTokens > kMaxTokens)
        throw std::invalid_argument("nTokens must be in [1, " + std::to_string(kMaxTokens) + "]");
    if (layers.empty() || layers.size() > kMaxLayers)
        throw std::invalid_argument("layer count must be in [1, " + std::to_string(kMaxLayers) + "]");
    if (options.metaBytes > kMaxMetaBytes)
        throw std::invalid_argument("meta is larger than 1 MiB");
    if (options.level >= kLevelCount)
        throw std::invalid_argument("level must be in [0, " + std::to_string(kLevelCount - 1) + "]");
    for (const LayerIn& layer : layers)
        if (layer.k.channels == 0 || layer.v.channels == 0 || layer.k.channels > kMaxEmbd || layer.v.channels > kMaxEmbd)
            throw std::invalid_argument("layer widths must be in [1, 65536]");
    const RopeSpec& rope = options.rope;
    if (rope.kind > 2)
        throw std::invalid_argument("rope kind must be 0, 1 or 2");
    std::vector<float> rotation;
    if (rope.kind != 0) {
        if (rope.headDim == 0 || rope.nRot == 0 || rope.nRot % 2 != 0 || rope.nRot > rope.headDim || rope.headDim > kMaxEmbd ||
            !(rope.freqBase > 0) || !std::isfinite(rope.freqBase) || !(rope.freqScale > 0) || !std::isfinite(rope.freqScale) ||
            (!rope.factors.empty() && rope.factors.size() != rope.nRot / 2) || (int64_t) rope.firstPos + nTokens > INT32_MAX)
            throw std::invalid_argument("invalid rope parameters");
        for (float f : rope.factors)
            if (!(f > 0) || !std::isfinite(f))
                throw std::invalid_argument("invalid rope frequency factor");
        for (const LayerIn& layer : layers)
            if (layer.k.channels % rope.headDim != 0)
                throw std::invalid_argument("K width is not a whole number of heads");
        rotationTable(rope, nTokens, rotation);
    }
    const uint32_t nLayer = (uint32_t) layers.size();
    std::vector<std::vector<uint8_t>> sections((size_t) nLayer * 2);
    std::vector<uint32_t> modes(sections.size());
    forEachOnThreads(sections.size(), options.threads, [&](size_t item, std::vector<float>&) {
        const uint32_t il = (uint32_t) (item / 2);
        const bool isK = item % 2 == 0;
        encodeTensor(isK ? layers[il].k : layers[il].v, nTokens, il, nLayer, isK, options, isK && !rotation.empty() ? rotation.data() : nullptr,
            sections[item], modes[item]);
    });
    if (stats)
        for (uint32_t m : modes)
            stats->modes[m]++;

    const size_t headerBytes = kFixedHeader + kLayerEntry * nLayer + ropeBlockBytes(rope) + options.metaBytes + 4;
    uint64_t payload = 0;
    for (const auto& s : sections)
        payload += s.size();
    std::vector<uint8_t> out;
    out.reserve(headerBytes + payload);
    out.insert(out.end(), kMagic, kMagic + 8);
    put32(out, kFormatVersion);
    put32(out, options.level);
    out.insert(out.end(), options.fingerprint, options.fingerprint + 16);
    put32(out, nTokens);
    put32(out, nLayer);
    put32(out, (options.vTrans ? 1 : 0) | (rope.kind != 0 ? 2 : 0));
    put32(out, options.metaBytes);
    put64(out, payload);
    uint64_t offset = 0;
    for (uint32_t il = 0; il < nLayer; il++) {
        const auto& k = sections[il * 2];
        const auto& v = sections[il * 2 + 1];
        const uint64_t bytes = k.size() + v.size();
        uint32_t crc = crc32(k.data(), k.size());
        crc = crc32(v.data(), v.size(), crc);
        put32(out, layers[il].k.channels);
        put32(out, layers[il].v.channels);
        put64(out, offset);
        put64(out, bytes);
        put32(out, crc);
        put32(out, 0);
        offset += bytes;
    }
    if (rope.kind != 0) {
        put32(out, rope.kind);
        put32(out, rope.nRot);
        put32(out, rope.headDim);
        put32(out, (uint32_t) rope.firstPos);
        uint32_t bits;
        std::memcpy(&bits, &rope.freqBase, 4);
        put32(out, bits);
        std::memcpy(&bits, &rope.freqScale, 4);
        put32(out, bits);
        put32(out, (uint32_t) rope.factors.size());
        for (float f : rope.factors) {
            std::memcpy(&bits, &f, 4);
            put32(out, bits);
        }
    }
    if (options.metaBytes)
        out.insert(out.end(), options.meta, options.meta + options.metaBytes);
    put32(out, crc32(out.data(), out.size()));
    for (auto& s : sections) {
        out.insert(out.end(), s.begin(), s.end());
        std::vector<uint8_t>().swap(s);
    }
    return out;
}

Error parseHeader(const uint8_t* data, size_t size, const DecodeExpect& expect, Header& header, std::string& detail) {
    if (size < 12)
        return fail(detail, size >= 8 && std::memcmp(data, kMagic, 8) != 0 ? Error::badMagic : Error::truncated,
            "file of " + std::to_string(size) + " bytes is shorter than the header");
    if (std::memcmp(data, kMagic, 8) != 0)
        return fail(detail, Error::badMagic, "not a Weft KV container");
    header.version = get32(data + 8);
    if (header.version != kFormatVersion)
        return fail(detail, Error::wrongVersion, "container version " + std::to_string(header.version) + ", this build reads " +
            std::to_string(kFormatVersion));
    if (size < kFixedHeader)
        return fail(detail, Error::truncated, "file of " + std::to_string(size) + " bytes is shorter than the header");
    header.level = get32(data + 12);
    std::memcpy(header.fingerprint, data + 16, 16);
    header.nTokens = get32(data + 32);
    header.nLayer = get32(data + 36);
    header.flags = get32(data + 40);
    header.metaBytes = get32(data + 44);
    header.payloadBytes = get64(data + 48);
    if (header.nLayer == 0 || header.nLayer > kMaxLayers || header.metaBytes > kMaxMetaBytes || header.nTokens == 0 ||
        header.nTokens > kMaxTokens || header.flags > 3 || header.level >= kLevelCount)
        return fail(detail, Error::badSizes, "header fields out of range (layers " + std::to_string(header.nLayer) + ", tokens " +
            std::to_string(header.nTokens) + ", meta " + std::to_string(header.metaBytes) + ")");
    uint64_t ropeBytes = 0;
    if (header.flags & 2) {
        const uint64_t at = kFixedHeader + (uint64_t) kLayerEntry * header.nLayer;
        if (size < at + 28)
            return fail(detail, Error::truncated, "file ends inside its RoPE parameters");
        RopeSpec& rope = header.rope;
        rope.kind = get32(data + at);
        rope.nRot = get32(data + at + 4);
        rope.headDim = get32(data + at + 8);
        rope.firstPos = (int32_t) get32(data + at + 12);
        std::memcpy(&rope.freqBase, data + at + 16, 4);
        std::memcpy(&rope.freqScale, data + at + 20, 4);
        const uint32_t nFactors = get32(data + at + 24);
        if (rope.kind < 1 || rope.kind > 2 || rope.headDim == 0 || rope.headDim > kMaxEmbd || rope.nRot == 0 || rope.nRot % 2 != 0 ||
            rope.nRot > rope.headDim || !(rope.freqBase > 0) || !std::isfinite(rope.freqBase) || !(rope.freqScale > 0) ||
            !std::isfinite(rope.freqScale) || (nFactors != 0 && nFactors != rope.nRot / 2))
            return fail(detail, Error::badSizes, "RoPE parameters out of range");
        ropeBytes = 28 + 4ull * nFactors;
        if (size < at + ropeBytes)
            return fail(detail, Error::truncated, "file ends inside its RoPE frequency factors");
        rope.factors.resize(nFactors);
        for (uint32_t i = 0; i < nFactors; i++) {
            std::memcpy(&rope.factors[i], data + at + 28 + 4 * i, 4);
            if (!(rope.factors[i] > 0) || !std::isfinite(rope.factors[i]))
                return fail(detail, Error::badSizes, "RoPE frequency factor out of range");
        }
    }
    header.headerBytes = kFixedHeader + (uint64_t) kLayerEntry * header.nLayer + ropeBytes + header.metaBytes + 4;
    if (size < header.headerBytes)
        return fail(detail, Error::truncated, "file of " + std::to_string(size) + " bytes is shorter than its " +
            std::to_string(header.headerBytes) + "-byte header");
    if (crc32(data, header.headerBytes - 4) != get32(data + header.headerBytes - 4))
        return fail(detail, Error::badHeader, "header checksum mismatch");
    if (expect.fingerprint != nullptr && std::memcmp(expect.fingerprint, header.fingerprint, 16) != 0)
        return fail(detail, Error::wrongModel, "the cache was made by another model or context setting");
    if (header.nTokens > expect.maxTokens)
        return fail(detail, Error::wrongShape, std::to_string(header.nTokens) + " tokens exceed the allowed " + std::to_string(expect.maxTokens));
    if (!expect.layers.empty() && expect.layers.size() != header.nLayer)
        return fail(detail, Error::wrongShape, std::to_string(header.nLayer) + " layers, the model has " + std::to_string(expect.layers.size()));
    header.layers.resize(header.nLayer);
    uint64_t offset = 0;
    for (uint32_t il = 0; il < header.nLayer; il++) {
        const uint8_t* e = data + kFixedHeader + (size_t) il * kLayerEntry;
        LayerInfo& info = header.layers[il];
        info.nEmbdK = get32(e);
        info.nEmbdV = get32(e + 4);
        info.offset = get64(e + 8);
        info.bytes = get64(e + 16);
        info.crc = get32(e + 24);
        if (info.nEmbdK == 0 || info.nEmbdV == 0 || info.nEmbdK > kMaxEmbd || info.nEmbdV > kMaxEmbd ||
            (header.rope.kind != 0 && info.nEmbdK % header.rope.headDim != 0))
            return fail(detail, Error::badSizes, "layer " + std::to_string(il) + " width out of range");
        if (!expect.layers.empty() && (expect.layers[il].first != info.nEmbdK || expect.layers[il].second != info.nEmbdV))
            return fail(detail, Error::wrongShape, "layer " + std::to_string(il) + " is " + std::to_string(info.nEmbdK) + "/" +
                std::to_string(info.nEmbdV) + " wide, the model's is " + std::to_string(expect.layers[il].first) + "/" +
                std::to_string(expect.layers[il].second));
        // A section never exceeds its head, parameters, 2 bytes per symbol of rANS plus states, 3 bytes of raw bits and 4 of
        // escape per value.
        const uint64_t values = (uint64_t) header.nTokens * (info.nEmbdK + info.nEmbdV);
        const uint64_t maxBytes = 2 * (kSectionHead + 16) + 8ull * (info.nEmbdK + info.nEmbdV) + 9 * values;
        // ...and never falls below the fewest bits its values can take: a small file cannot claim a huge shape.
        const double minBytes = (double) values * tables().minBits / 8 / 2;
        if (info.offset != offset || info.bytes < 2 * (kSectionHead + 16) || info.bytes > maxBytes || (double) info.bytes < minBytes)
            return fail(detail, Error::badSizes, "layer " + std::to_string(il) + " offset or size out of range");
        offset += info.bytes;
    }
    if (offset != header.payloadBytes)
        return fail(detail, Error::badSizes, "layer sizes add up to " + std::to_string(offset) + " bytes, the header says " +
            std::to_string(header.payloadBytes));
    if (size - header.headerBytes < header.payloadBytes)
        return fail(detail, Error::truncated, "file holds " + std::to_string(size - header.headerBytes) + " payload bytes of " +
            std::to_string(header.payloadBytes));
    if (size - header.headerBytes > header.payloadBytes)
        return fail(detail, Error::badSizes, "file has " + std::to_string(size - header.headerBytes - header.payloadBytes) +
            " bytes after its payload");
    header.meta = data + kFixedHeader + (size_t) kLayerEntry * header.nLayer + ropeBytes;
    if (header.rope.kind != 0)
        rotationTable(header.rope, header.nTokens, header.rotation);
    return Error::none;
}

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
