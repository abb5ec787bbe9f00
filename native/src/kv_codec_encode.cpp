// The KV codec's encoder: per tensor, per-channel quantization, the grouping mode that codes it in the fewest bits,
// then rANS; encode() runs the tensors on a few threads and hands the sections to the container (kv_codec_format.cpp).
#include <algorithm>
#include <climits>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <stdexcept>

#include "kv_codec_detail.h"
#include "thread_pool.h"

namespace weft_codec {

namespace detail {

namespace {

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

} // namespace

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
    if (options.spreadMode == 1) {
        // Robust: the channel's median and 1.4826 x its median absolute deviation (a Gaussian's sigma), so a few
        // outlier tokens (an attention sink's) do not coarsen every other token's step; outliers escape.
        std::vector<float> column(nTokens);
        for (uint32_t c = 0; c < C; c++) {
            for (uint32_t tok = 0; tok < nTokens; tok++)
                column[tok] = x[(size_t) tok * C + c];
            std::nth_element(column.begin(), column.begin() + nTokens / 2, column.end());
            const double median = column[nTokens / 2];
            for (uint32_t tok = 0; tok < nTokens; tok++)
                column[tok] = std::abs(x[(size_t) tok * C + c] - (float) median);
            std::nth_element(column.begin(), column.begin() + nTokens / 2, column.end());
            const double sigma = 1.4826 * column[nTokens / 2];
            if (sigma > 0) {
                mean[c] = median;
                sq[c] = sigma * sigma * nTokens;
            }
        }
    }
    double tensorSq = 0;
    for (uint32_t c = 0; c < C; c++)
        tensorSq += sq[c] / nTokens;
    const double tensorSpread = std::sqrt(tensorSq / C);
    const uint32_t level = std::min(options.level, kLevelCount - 1);
    const double scale = kLevelScale[level] * layerFactor(layer, nLayer, isK, options) *
        (isK ? kLevelKFactor[level] * options.kStepFactor : kLevelVFactor[level] * options.vStepFactor);
    const double beta = options.spreadExponent >= 0 ? options.spreadExponent : kLevelBeta[level];
    // Per-channel factor: content-key heads (see EncodeOptions::contentFactor) and the experiments' layer mask.
    std::vector<double> channelFactor(C, isK && layer < 32 && (options.kLayerMask >> layer & 1) ? options.kMaskFactor : 1.0);
    const double contentFactor = options.contentFactor >= 0 ? options.contentFactor : kLevelContentFactor[level];
    // At least 8 pairs on each side (head size 32 and up): over fewer, the ratio is noise (stories260K's heads of 8).
    if (isK && rotation != nullptr && contentFactor != 1.0 && options.rope.headDim > 0 && options.rope.nRot >= 32) {
        const RopeSpec& rope = options.rope;
        const uint32_t headDim = rope.headDim, half = rope.nRot / 2;
        for (uint32_t h = 0; h + 1 <= C / headDim; h++) {
            double lowSq = 0, highSq = 0;
            uint32_t low = 0, high = 0;
            for (uint32_t j = 0; j < headDim; j++) {
                const uint32_t pair = j >= rope.nRot ? half : rope.kind == 2 ? j % half : j / 2;
                const double s2 = sq[h * headDim + j] / nTokens;
                if (pair >= half / 2) {
                    lowSq += s2;
                    low++;
                } else {
                    highSq += s2;
                    high++;
                }
            }
            const double ratio = low && high && highSq > 0 ? std::sqrt((lowSq / low) / (highSq / high)) : 0;
            const bool content = ratio > options.contentRatio;
            if (std::getenv("WEFT_CODEC_DEBUG") != nullptr)
                std::fprintf(stderr, "codec: layer %u K head %u low/high spread ratio %.2f%s\n", layer, h, ratio, content ? " (content)" : "");
            if (content)
                for (uint32_t j = 0; j < headDim; j++)
                    channelFactor[h * headDim + j] *= contentFactor;
        }
    }

    // Steps: the section's base step times 2^(k/8) per channel (one byte); means: whole steps (two bytes).
    const float base = (float) std::min(std::max(scale * tensorSpread, 1.0 / 16384), 60000.0);
    std::vector<uint8_t> stepCode(C);
    std::vector<int16_t> meanSteps(C);
    std::vector<float> stepF(C);
    for (uint32_t c = 0; c < C; c++) {
        const double spread = std::sqrt(sq[c] / nTokens);
        const double step = std::max(scale * channelFactor[c] * std::pow(spread, beta) * std::pow(tensorSpread, 1 - beta), 1.0 / 16384);
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

    // rANS: value i goes to state i % S, each state with its own byte stream (its first 4 bytes the final state),
    // encoded backwards so the decoder reads forwards. Separate streams keep the states independent in the decoder: no
    // shared read pointer ties one state's renormalization to another's.
    const uint32_t S = statesFor(n);
    const size_t streamCapacity = (n / S + 1) * 2 + 4;
    std::vector<uint8_t> streams(streamCapacity * S);
    uint8_t* ptr[kMaxStates];
    uint32_t state[kMaxStates];
    for (uint32_t j = 0; j < S; j++) {
        ptr[j] = streams.data() + streamCapacity * (j + 1);
        state[j] = kRansL;
    }
    for (size_t i = n; i-- > 0;) {
        const uint32_t tok = (uint32_t) (i / C), c = (uint32_t) (i % C);
        const std::vector<ChannelCode>& codes = isAnchor(mode, tok) ? best.anchor : best.delta;
        const Table& table = t.table[codes[c].cls];
        const uint32_t s = symbols[i];
        const uint32_t freq = table.freq[s];
        uint32_t& x = state[i % S];
        uint8_t*& p = ptr[i % S];
        const uint32_t xMax = ((kRansL >> kScaleBits) << 16) * freq;
        if (x >= xMax) {
            p -= 2;
            p[0] = (uint8_t) x;
            p[1] = (uint8_t) (x >> 8);
            x >>= 16;
        }
        x = ((x / freq) << kScaleBits) + (x % freq) + table.cum[s];
    }
    uint32_t streamBytes[kMaxStates], ransBytes = 0;
    for (uint32_t j = 0; j < S; j++) {
        ptr[j] -= 4;
        set32(ptr[j], state[j]);
        streamBytes[j] = (uint32_t) (streams.data() + streamCapacity * (j + 1) - ptr[j]);
        ransBytes += streamBytes[j];
    }

    out.push_back((uint8_t) mode);
    out.push_back((uint8_t) kGroup);
    put16(out, (uint16_t) S);
    put32(out, ransBytes);
    put32(out, rawBytes);
    put32(out, escapes);
    uint32_t baseBits;
    std::memcpy(&baseBits, &base, 4);
    put32(out, baseBits);
    for (uint32_t j = 0; j < S; j++)
        put32(out, streamBytes[j]);
    out.reserve(out.size() + perChannel * C + ransBytes + rawBytes + esc.size());
    for (uint32_t c = 0; c < C; c++) {
        put16(out, (uint16_t) meanSteps[c]);
        out.push_back(stepCode[c]);
        out.push_back((uint8_t) (best.anchor[c].cls | (best.anchor[c].shift << 5)));
        if (mode != 0)
            out.push_back((uint8_t) (best.delta[c].cls | (best.delta[c].shift << 5)));
    }
    for (uint32_t j = 0; j < S; j++)
        out.insert(out.end(), ptr[j], ptr[j] + streamBytes[j]);
    out.insert(out.end(), raw.begin(), raw.begin() + rawBytes);
    out.insert(out.end(), esc.begin(), esc.end());
}

} // namespace detail

using namespace detail;

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
    return writeContainer(nTokens, layers, options, sections);
}

} // namespace weft_codec
