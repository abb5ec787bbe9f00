// The KV codec's tables: the entropy tables (one per class), the level rule and RoPE's rotation tables.
#include <algorithm>
#include <cmath>

#include "half.h"
#include "kv_codec_detail.h"

namespace weft_codec::detail {

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

// Finer steps for the first layers (CacheGen keeps twice the levels for K in the first 10 of 32 layers and V in the
// first 2): by default K's first 10 of every 32 layers and V's first 2 (rounded up) take 0.6 of the level's step.
float layerFactor(uint32_t layer, uint32_t nLayer, bool isK, const EncodeOptions& options) {
    const uint32_t perThirtyTwo = isK ? options.kFineLayers : options.vFineLayers;
    const uint32_t fine = (uint32_t) (((uint64_t) nLayer * perThirtyTwo + 31) / 32);
    const uint32_t level = std::min(options.level, kLevelCount - 1);
    return layer < fine ? (isK ? options.kFineFactor * kLevelKFineScale[level] : options.vFineFactor) : 1.0f;
}

// Per token: cos of each pair, then sin of each pair (so a row's rotation is two contiguous loops the compiler vectorizes).
void rotationTable(const RopeSpec& rope, uint32_t nTokens, std::vector<float>& cs) {
    const uint32_t pairs = rope.nRot / 2;
    cs.resize((size_t) nTokens * pairs * 2);
    std::vector<double> freq(pairs);
    for (uint32_t i = 0; i < pairs; i++)
        freq[i] = rope.freqScale * std::pow((double) rope.freqBase, -2.0 * i / rope.nRot) / (rope.factors.empty() ? 1.0 : rope.factors[i]);
    for (uint32_t t = 0; t < nTokens; t++)
        for (uint32_t i = 0; i < pairs; i++) {
            const double angle = ((double) rope.firstPos + t) * freq[i];
            cs[(size_t) t * pairs * 2 + i] = (float) std::cos(angle);
            cs[(size_t) t * pairs * 2 + pairs + i] = (float) std::sin(angle);
        }
}

void rotateRow(float* row, uint32_t C, const RopeSpec& rope, const float* cs, float sign) {
    const uint32_t pairs = rope.nRot / 2;
    const float* cosines = cs;
    const float* sines = cs + pairs;
    for (uint32_t head = 0; head + rope.headDim <= C; head += rope.headDim) {
        if (rope.kind == 2) {
            float* __restrict a = row + head;
            float* __restrict b = row + head + pairs;
            for (uint32_t i = 0; i < pairs; i++) {
                const float c = cosines[i], sn = sign * sines[i];
                const float x0 = a[i], x1 = b[i];
                a[i] = x0 * c - x1 * sn;
                b[i] = x0 * sn + x1 * c;
            }
        } else {
            float* h = row + head;
            for (uint32_t i = 0; i < pairs; i++) {
                const float c = cosines[i], sn = sign * sines[i];
                const float x0 = h[2 * i], x1 = h[2 * i + 1];
                h[2 * i] = x0 * c - x1 * sn;
                h[2 * i + 1] = x0 * sn + x1 * c;
            }
        }
    }
}

} // namespace weft_codec::detail
