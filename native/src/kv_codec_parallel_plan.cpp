// Plans a container's parallel decode (kv_codec_parallel_plan.h).
#include "kv_codec_parallel_plan.h"

#include <algorithm>

#include "kv_codec_detail.h"

namespace weft_codec {

using namespace detail;

static_assert(parallel::kScaleBits == kScaleBits && parallel::kRansL == kRansL && parallel::kRange == kRange && parallel::kEscape == kEscape &&
    parallel::kMaxStates == kMaxStates, "kv_codec_parallel.h repeats the format's constants");

namespace {

Error planSection(const uint8_t* data, uint64_t at, uint64_t bytes, uint32_t nTokens, uint32_t C, uint16_t* out, uint64_t rowStride,
        uint64_t colStride, const RopeSpec* rope, uint32_t classStride, ParallelPlan& plan, std::string& detail) {
    SectionHead head;
    std::vector<SectionChannel> codes;
    const Error error = parseSection(data + at, bytes, nTokens, C, head, codes, detail);
    if (error != Error::none)
        return error;
    parallel::SectionPlan s{};
    for (uint32_t k = 0; k < head.S; k++) {
        s.streamAt[k] = at + head.streamOffset[k];
        s.streamEnd[k] = s.streamAt[k] + head.streamBytes[k];
    }
    s.rawAt = at + head.rawOffset;
    s.rawBytes = head.rawBytes;
    s.escapeAt = at + head.escapeOffset;
    s.escapes = head.escapes;
    s.valueAt = plan.values;
    s.channelAt = (uint32_t) plan.channels.size();
    s.rowAt = plan.rows;
    s.mode = head.mode;
    s.group = head.group;
    s.S = head.S;
    s.C = C;
    s.nTokens = nTokens;
    s.rotate = rope != nullptr ? 1 : 0;
    s.headDim = rope != nullptr ? rope->headDim : 0;
    s.nRot = rope != nullptr ? rope->nRot : 0;
    s.ropeKind = rope != nullptr ? rope->kind : 0;
    s.out = out;
    s.rowStride = rowStride;
    s.colStride = colStride;
    for (const SectionChannel& code : codes)
        plan.channels.push_back({code.mean, code.step, code.anchorClass * classStride, code.deltaClass * classStride, code.anchorShift,
            code.deltaShift, {0, 0}});
    plan.values += (uint64_t) nTokens * C;
    plan.rows += nTokens + 1;
    plan.sections.push_back(s);
    return Error::none;
}

} // namespace

Error planParallelDecode(const uint8_t* data, size_t size, const Header& header, const std::vector<LayerOut>& out, uint32_t classStride,
        ParallelPlan& plan, std::string& detail) {
    (void) size;
    plan = ParallelPlan{};
    if (out.size() != header.nLayer)
        return fail(detail, Error::wrongShape, "an output for each of the " + std::to_string(header.nLayer) + " layers is needed");
    for (uint32_t il = 0; il < header.nLayer; il++) {
        const LayerInfo& info = header.layers[il];
        const uint64_t at = header.headerBytes + info.offset;
        const uint8_t* p = data + at;
        Error error = crc32(p, info.bytes) != info.crc ? fail(detail, Error::checksum, "checksum mismatch") : Error::none;
        uint64_t kBytes = 0;
        if (error == Error::none)
            error = sectionLength(p, info.bytes, info.nEmbdK, kBytes, detail);
        if (error == Error::none)
            error = planSection(data, at, kBytes, header.nTokens, info.nEmbdK, out[il].k, info.nEmbdK, 1,
                header.rotation.empty() ? nullptr : &header.rope, classStride, plan, detail);
        if (error == Error::none)
            error = planSection(data, at + kBytes, info.bytes - kBytes, header.nTokens, info.nEmbdV, out[il].v,
                header.vTrans() ? 1 : info.nEmbdV, header.vTrans() ? header.nTokens : 1, nullptr, classStride, plan, detail);
        if (error != Error::none) {
            detail = "layer " + std::to_string(il) + ": " + detail;
            return error;
        }
    }
    return Error::none;
}

const uint32_t* parallelSlotsOnHost(uint32_t& classStride) {
    const Tables& t = tables();
    classStride = (uint32_t) (t.table[1].slot - t.table[0].slot);
    return t.table[0].slot;
}

std::vector<uint32_t> packedParallelSlots() {
    const Tables& t = tables();
    std::vector<uint32_t> slots((size_t) kClasses * kScale);
    for (uint32_t c = 0; c < kClasses; c++)
        std::copy(t.table[c].slot, t.table[c].slot + kScale, slots.begin() + (size_t) c * kScale);
    return slots;
}

const char* sectionErrorText(uint32_t error) {
    switch (error) {
        case parallel::streamShort: return "stream ends before its values";
        case parallel::streamLong: return "stream does not end where its values do";
        case parallel::escapesMismatch: return "escapes do not add up to the section's count";
        case parallel::rawBitsMismatch: return "raw bits do not fill the section's raw bytes";
        default: return "corrupt section";
    }
}

} // namespace weft_codec
