// Coded splice parts (kv_splice_coded.h).
#include "kv_splice_coded.h"

#include <stdexcept>
#include <string>

#include "kv_codec_detail.h"
#include "state_blob.h"

namespace splice {

namespace {

std::runtime_error partError(size_t index, weft_codec::Error error, const std::string& detail) {
    // "coded part <i>: <reason>: <detail>": the engine reads the reason to drop the file, as a decode's miss would.
    return std::runtime_error("coded part " + std::to_string(index) + ": " + weft_codec::errorReason(error) + ": " + detail);
}

} // namespace

std::vector<weft_codec::Header> prepareCodedParts(const Plan& plan) {
    std::vector<weft_codec::Header> headers(plan.parts.size());
    weft_codec::DecodeExpect expect;
    expect.fingerprint = plan.codedFingerprint;
    for (const LayerShape& shape : plan.layers)
        expect.layers.emplace_back((uint32_t) (shape.kRowSize / 2), (uint32_t) (shape.vRowSize / 2));
    for (size_t p = 0; p < plan.parts.size(); p++) {
        const Part& part = plan.parts[p];
        if (part.coded == nullptr)
            continue;
        expect.maxTokens = part.cellCount;
        weft_codec::Header& header = headers[p];
        std::string detail;
        const weft_codec::Error error = weft_codec::parseHeader(part.coded, part.codedBytes, expect, header, detail);
        if (error != weft_codec::Error::none)
            throw partError(p, error, detail);
        if (header.nTokens != part.cellCount)
            throw partError(p, weft_codec::Error::wrongShape, std::to_string(header.nTokens) + " tokens for " + std::to_string(part.cellCount) + " cells");
        if (header.vTrans())
            throw partError(p, weft_codec::Error::wrongShape, "V is coded transposed; the cache holds it in rows");
        if (header.rope.kind == 0 && plan.rope.kind != RopeKind::None && part.delta != 0)
            throw partError(p, weft_codec::Error::wrongShape, "K is coded as stored, at other positions");
        if (header.rope.kind != 0) {
            header.rope.firstPos = part.positions[0];
            weft_codec::detail::rotationTable(header.rope, header.nTokens, header.rotation);
        }
    }
    return headers;
}

void decodeCodedLayer(const Part& part, size_t index, const weft_codec::Header& header, size_t il, uint8_t* k, uint8_t* v) {
    std::string detail;
    const weft_codec::Error error = weft_codec::decodeLayer(part.coded, part.codedBytes, header, (uint32_t) il,
        weft_codec::LayerOut{reinterpret_cast<uint16_t*>(k), reinterpret_cast<uint16_t*>(v)}, detail);
    if (error != weft_codec::Error::none)
        throw partError(index, error, detail);
}

} // namespace splice
