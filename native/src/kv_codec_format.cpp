// The KV codec's container: its header (magic, version, fingerprint, shape, per-layer offsets and checksums, RoPE,
// the caller's meta) written around encoded sections and parsed back with every field checked; each section's head and
// channel parameters parsed and checked (parseSection, for both decoders); crc32; miss reasons.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "kv_codec_detail.h"

namespace weft_codec {

using namespace detail;

namespace {

size_t ropeBlockBytes(const RopeSpec& rope) {
    return rope.kind == 0 ? 0 : 28 + 4 * rope.factors.size();
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

namespace detail {

std::vector<uint8_t> writeContainer(uint32_t nTokens, const std::vector<LayerIn>& layers, const EncodeOptions& options,
        std::vector<std::vector<uint8_t>>& sections) {
    const RopeSpec& rope = options.rope;
    const uint32_t nLayer = (uint32_t) layers.size();
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

} // namespace detail

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
        const uint64_t maxBytes = 2 * kMaxSectionOverhead + 8ull * (info.nEmbdK + info.nEmbdV) + 9 * values;
        // ...and never falls below the fewest bits its values can take: a small file cannot claim a huge shape.
        const double minBytes = (double) values * tables().minBits / 8 / 2;
        if (info.offset != offset || info.bytes < 2 * kMinSection || info.bytes > maxBytes || (double) info.bytes < minBytes)
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

// A section's fixed fields, streams and channel parameters, each checked (both decoders start here).
Error detail::parseSection(const uint8_t* p, size_t size, uint32_t nTokens, uint32_t C, SectionHead& head, std::vector<SectionChannel>& channels,
        std::string& detail) {
    const Tables& t = tables();
    if (size < kSectionFixed)
        return fail(detail, Error::corrupt, "section shorter than its head");
    const uint32_t mode = p[0], group = p[1], S = get16(p + 2);
    if (mode > 2 || (mode == 2 && group == 0))
        return fail(detail, Error::corrupt, "unknown section mode " + std::to_string(mode));
    if (S != kFewStates && S != kMaxStates)
        return fail(detail, Error::corrupt, "section has " + std::to_string(S) + " rANS states");
    const uint64_t ransBytes = get32(p + 4), rawBytes = get32(p + 8), escapes = get32(p + 12);
    const uint64_t perChannel = mode == 0 ? 4 : 5;
    const size_t fixed = kSectionFixed + 4 * S;
    const uint64_t need = fixed + perChannel * C + ransBytes + rawBytes + escapes * 4;
    if (need != size)
        return fail(detail, Error::corrupt, "section sizes add up to " + std::to_string(need) + " bytes, not " + std::to_string(size));
    uint64_t streamSum = 0;
    for (uint32_t k = 0; k < S; k++) {
        const uint32_t bytes = get32(p + kSectionFixed + 4 * k);
        if (bytes < 4 || bytes % 2 != 0)
            return fail(detail, Error::corrupt, "invalid rANS stream length");
        streamSum += bytes;
    }
    if (streamSum != ransBytes)
        return fail(detail, Error::corrupt, "rANS streams add up to " + std::to_string(streamSum) + " bytes, not " + std::to_string(ransBytes));
    if (escapes > (uint64_t) nTokens * C)
        return fail(detail, Error::corrupt, "more escapes than values");

    float base;
    std::memcpy(&base, p + 16, 4);
    if (!std::isfinite(base) || !(base > 0) || base > 1e6f)
        return fail(detail, Error::corrupt, "invalid base step");
    head = SectionHead{};
    head.mode = mode;
    head.group = group;
    head.S = S;
    head.ransBytes = ransBytes;
    head.rawBytes = rawBytes;
    head.escapes = escapes;
    channels.resize(C);
    const uint8_t* params = p + fixed;
    for (uint32_t c = 0; c < C; c++, params += perChannel) {
        const float step = base * t.stepScale[params[2]];
        const uint32_t cls = params[3] & 31, shift = params[3] >> 5;
        const uint32_t dcls = mode ? params[4] & 31 : cls, dshift = mode ? params[4] >> 5 : shift;
        if (!std::isfinite(step) || !(step > 0))
            return fail(detail, Error::corrupt, "channel " + std::to_string(c) + " has invalid parameters");
        channels[c] = {(int16_t) get16(params), step, (uint8_t) cls, (uint8_t) dcls, (uint8_t) shift, (uint8_t) dshift};
        head.anchorShifts |= shift != 0;
        head.deltaShifts |= dshift != 0;
    }
    uint64_t at = (uint64_t) (params - p);
    for (uint32_t k = 0; k < S; k++) {
        head.streamOffset[k] = at;
        head.streamBytes[k] = get32(p + kSectionFixed + 4 * k);
        if (get32(p + at) < kRansL)
            return fail(detail, Error::corrupt, "invalid rANS state");
        at += head.streamBytes[k];
    }
    head.rawOffset = at;
    head.escapeOffset = at + rawBytes;
    return Error::none;
}

Error detail::sectionLength(const uint8_t* p, size_t size, uint32_t C, uint64_t& length, std::string& detail) {
    if (size < kSectionFixed)
        return fail(detail, Error::corrupt, "section shorter than its head");
    const uint64_t perChannel = p[0] == 0 ? 4 : 5;
    length = kSectionFixed + 4ull * get16(p + 2) + perChannel * C + (uint64_t) get32(p + 4) + get32(p + 8) + (uint64_t) get32(p + 12) * 4;
    if (length > size)
        return fail(detail, Error::corrupt, "K section runs past its layer");
    return Error::none;
}

} // namespace weft_codec
