// Checks the parallel decoder's steps (src/kv_codec_parallel.h, what kv_codec_cuda.cu runs on a GPU) on the CPU: each
// step is run for every thread index in turn, in the order the GPU's kernels run, and the result is compared bit for
// bit with the host decoder's (decodeAll). Containers cover every level, grouping mode, RoPE kind, V layout and small
// shapes (4 rANS states, channels fewer than states); then payload bytes are mutated (checksums recomputed, so the
// decoders see the damage): both decoders must refuse the same files with the same error and decode the rest alike.
//
// Build: g++ -O2 -std=c++17 -pthread -Inative/src native/src/kv_codec_{tables,encode,decode,format,output,parallel_plan}.cpp
//        native/tools/kv_codec_parallel_check.cpp -o /tmp/kvpc
// Run:   /tmp/kvpc [mutations 2000] [--sabotage] [container files...]
// Files named on the command line (real chunk caches the engine encoded) are checked and mutated with the rest.
// --sabotage moves every section's second row one raw bit on after the scan: the check must then fail (it shows the
// comparison can catch a wrong offset). Prints one summary line; exits 1 on any difference.
#include <cstdio>
#include <fstream>
#include <iterator>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "kv_codec.h"
#include "kv_codec_detail.h"
#include "kv_codec_parallel_plan.h"
#include "synthetic_kv.h"

using namespace weft_codec;

namespace {

bool sabotage = false;
// What the files' sections exercised: each grouping mode, raw low bits, escapes.
uint32_t sectionsInMode[3] = {0, 0, 0}, sectionsWithRawBits = 0, sectionsWithEscapes = 0;

// The GPU's kernel order, one thread index after another.
Error decodeParallelOnHost(const uint8_t* data, size_t size, const Header& header, const std::vector<LayerOut>& out, std::string& detail) {
    uint32_t classStride = 0;
    const uint32_t* slots = parallelSlotsOnHost(classStride);
    ParallelPlan plan;
    const Error planned = planParallelDecode(data, size, header, out, classStride, plan, detail);
    if (planned != Error::none)
        return planned;
    for (const parallel::SectionPlan& s : plan.sections) {
        sectionsInMode[s.mode]++;
        sectionsWithRawBits += s.rawBytes > 0;
        sectionsWithEscapes += s.escapes > 0;
    }
    std::vector<uint8_t> symbols(plan.values);
    std::vector<int32_t> values(plan.values);
    std::vector<uint64_t> rowBits(plan.rows), rowEscapes(plan.rows);
    std::vector<uint32_t> errors(plan.sections.size(), parallel::sectionOk);
    const auto failed = [&](std::string& text) {
        for (size_t i = 0; i < errors.size(); i++)
            if (errors[i] != parallel::sectionOk) {
                text = "layer " + std::to_string(i / 2) + ": " + sectionErrorText(errors[i]);
                return true;
            }
        return false;
    };
    for (size_t i = 0; i < plan.sections.size(); i++)
        for (uint32_t k = 0; k < plan.sections[i].S && errors[i] == parallel::sectionOk; k++)
            errors[i] = parallel::stateSymbols(data, plan.sections[i], plan.channels.data(), slots, k, symbols.data());
    if (failed(detail))
        return Error::corrupt;
    for (const parallel::SectionPlan& s : plan.sections)
        for (uint32_t t = 0; t < s.nTokens; t++) {
            uint32_t bits, escapes;
            parallel::rowCounts(s, plan.channels.data(), symbols.data(), t, bits, escapes);
            rowBits[s.rowAt + t] = bits;
            rowEscapes[s.rowAt + t] = escapes;
        }
    for (size_t i = 0; i < plan.sections.size(); i++)
        errors[i] = parallel::scanRows(plan.sections[i], rowBits.data(), rowEscapes.data());
    if (failed(detail))
        return Error::corrupt;
    if (sabotage)
        for (const parallel::SectionPlan& s : plan.sections)
            if (s.nTokens > 1 && rowBits[s.rowAt + 2] > rowBits[s.rowAt + 1])
                rowBits[s.rowAt + 1]++;
    for (const parallel::SectionPlan& s : plan.sections)
        for (uint32_t t = 0; t < s.nTokens; t++)
            parallel::rowValues(data, s, plan.channels.data(), symbols.data(), rowBits.data(), rowEscapes.data(), t, values.data());
    for (const parallel::SectionPlan& s : plan.sections)
        for (uint32_t c = 0; c < s.C; c++)
            parallel::channelValues(s, plan.channels.data(), c, values.data());
    for (const parallel::SectionPlan& s : plan.sections)
        if (s.rotate)
            for (uint32_t t = 0; t < s.nTokens; t++)
                for (uint32_t head = 0; head < s.C / s.headDim; head++)
                    parallel::rotateHead(s, values.data(), header.rotation.data(), t, head);
    return Error::none;
}

struct Decoded {
    Error error = Error::none;
    std::string detail;
    std::vector<uint16_t> bytes;
};

Decoded decodeWith(bool parallel, const std::vector<uint8_t>& file, uint32_t threads) {
    Decoded result;
    Header header;
    DecodeExpect expect;
    result.error = parseHeader(file.data(), file.size(), expect, header, result.detail);
    if (result.error != Error::none)
        return result;
    size_t total = 0;
    for (const LayerInfo& info : header.layers)
        total += (size_t) header.nTokens * (info.nEmbdK + info.nEmbdV);
    // Filled with a pattern the decoders never write alike by chance, so a value one of them leaves out shows.
    result.bytes.assign(total, parallel ? 0xAAAA : 0x5555);
    std::vector<LayerOut> out;
    size_t at = 0;
    for (const LayerInfo& info : header.layers) {
        out.push_back(LayerOut{result.bytes.data() + at, result.bytes.data() + at + (size_t) header.nTokens * info.nEmbdK});
        at += (size_t) header.nTokens * (info.nEmbdK + info.nEmbdV);
    }
    result.error = parallel ? decodeParallelOnHost(file.data(), file.size(), header, out, result.detail)
        : decodeAll(file.data(), file.size(), header, out, threads, result.detail);
    return result;
}

struct Shape {
    uint32_t layers, tokens, width;
    uint32_t ropeKind, nRot, headDim;
};

std::vector<uint8_t> encodeCase(const Shape& shape, uint32_t level, uint32_t modeMask, bool vTrans, uint32_t seed) {
    std::mt19937 rng(seed);
    const SyntheticChunk chunk = syntheticChunk(rng, shape.layers, shape.tokens, shape.width, vTrans);
    EncodeOptions options;
    options.level = level;
    options.modeMask = modeMask;
    options.vTrans = vTrans;
    if (shape.ropeKind != 0) {
        options.rope.kind = shape.ropeKind;
        options.rope.nRot = shape.nRot;
        options.rope.headDim = shape.headDim;
        options.rope.freqBase = 500000;
        options.rope.firstPos = 1;
    }
    return encode(shape.tokens, chunk.layers, options);
}

// A mutated copy: a few payload bytes changed, then the layers' and the header's checksums made to match again.
std::vector<uint8_t> mutate(const std::vector<uint8_t>& file, const Header& header, std::mt19937& rng) {
    std::vector<uint8_t> out = file;
    const uint64_t payload = header.payloadBytes;
    const uint32_t changes = 1 + rng() % 3;
    for (uint32_t i = 0; i < changes; i++) {
        const uint64_t at = header.headerBytes + rng() % payload;
        out[at] = rng() % 2 == 0 ? (uint8_t) (out[at] ^ (1u << (rng() % 8))) : (uint8_t) rng();
    }
    for (uint32_t il = 0; il < header.nLayer; il++) {
        const LayerInfo& info = header.layers[il];
        detail::set32(out.data() + detail::kFixedHeader + (size_t) il * detail::kLayerEntry + 24,
            crc32(out.data() + header.headerBytes + info.offset, info.bytes));
    }
    detail::set32(out.data() + header.headerBytes - 4, crc32(out.data(), header.headerBytes - 4));
    return out;
}

} // namespace

int main(int argc, char** argv) {
    uint32_t mutations = 2000;
    std::vector<std::vector<uint8_t>> given;
    for (int i = 1; i < argc; i++) {
        if (std::strcmp(argv[i], "--sabotage") == 0) {
            sabotage = true;
        } else if (argv[i][0] >= '0' && argv[i][0] <= '9') {
            mutations = (uint32_t) std::atoi(argv[i]);
        } else {
            std::ifstream in(argv[i], std::ios::binary);
            if (!in) {
                std::printf("cannot read %s\n", argv[i]);
                return 2;
            }
            given.emplace_back(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
        }
    }
    const Shape shapes[] = {
        {2, 160, 256, 2, 128, 128},  // neox RoPE, 16 states
        {2, 37, 96, 1, 16, 32},      // pairs (2i, 2i+1), dims past nRot, rows not a multiple of the group
        {1, 5, 24, 0, 0, 0},         // 120 values: 4 states
        {1, 300, 3, 0, 0, 0},        // fewer channels than states
    };
    const uint32_t modeMasks[] = {1, 2, 4, 7};
    uint32_t files = 0, differences = 0, seed = 1;
    std::vector<std::vector<uint8_t>> corpus;
    for (const Shape& shape : shapes)
        for (uint32_t level = 0; level < kLevelCount; level++)
            for (uint32_t modeMask : modeMasks)
                for (bool vTrans : {false, true}) {
                    const std::vector<uint8_t> file = encodeCase(shape, level, modeMask, vTrans, seed++);
                    const Decoded host = decodeWith(false, file, 2), parallel = decodeWith(true, file, 1);
                    files++;
                    if (host.error != Error::none || parallel.error != Error::none || host.bytes != parallel.bytes) {
                        differences++;
                        if (differences <= 5)
                            std::printf("DIFFERENT: %ux%ux%u rope %u level %u modes %u vTrans %d: host %s (%s), parallel %s (%s)%s\n",
                                shape.layers, shape.tokens, shape.width, shape.ropeKind, level, modeMask, (int) vTrans,
                                errorReason(host.error), host.detail.c_str(), errorReason(parallel.error), parallel.detail.c_str(),
                                host.bytes != parallel.bytes ? ", outputs differ" : "");
                    }
                    if (level == 0 || level == kDefaultLevel || level == kLevelCount - 1)
                        corpus.push_back(file);
                }
    for (const std::vector<uint8_t>& file : given) {
        const Decoded host = decodeWith(false, file, 2), parallel = decodeWith(true, file, 1);
        files++;
        if (host.error != Error::none || parallel.error != Error::none || host.bytes != parallel.bytes) {
            differences++;
            std::printf("DIFFERENT: a given file: host %s (%s), parallel %s (%s)%s\n", errorReason(host.error), host.detail.c_str(),
                errorReason(parallel.error), parallel.detail.c_str(), host.bytes != parallel.bytes ? ", outputs differ" : "");
        }
        corpus.push_back(file);
    }
    const uint32_t coverage[] = {sectionsInMode[0], sectionsInMode[1], sectionsInMode[2], sectionsWithRawBits, sectionsWithEscapes};
    std::mt19937 rng(7);
    uint32_t refused = 0, accepted = 0;
    for (uint32_t m = 0; m < mutations; m++) {
        const std::vector<uint8_t>& file = corpus[m % corpus.size()];
        Header header;
        std::string detail;
        if (parseHeader(file.data(), file.size(), DecodeExpect{}, header, detail) != Error::none)
            return 2;
        const std::vector<uint8_t> bad = mutate(file, header, rng);
        const Decoded host = decodeWith(false, bad, 1), parallel = decodeWith(true, bad, 1);
        const bool same = host.error == parallel.error && (host.error != Error::none || host.bytes == parallel.bytes);
        (host.error == Error::none ? accepted : refused)++;
        if (!same) {
            differences++;
            if (differences <= 5)
                std::printf("DIFFERENT on mutation %u: host %s (%s), parallel %s (%s)\n", m, errorReason(host.error), host.detail.c_str(),
                    errorReason(parallel.error), parallel.detail.c_str());
        }
    }
    std::printf("parallel-check: %u files (%zu given; sections in modes 0/1/2: %u/%u/%u, with raw bits %u, with escapes %u) and %u mutations "
        "(%u refused, %u decoded): %u differences from the host decoder%s\n", files, given.size(), coverage[0], coverage[1], coverage[2], coverage[3],
        coverage[4], mutations, refused, accepted, differences, sabotage ? " (sabotaged)" : "");
    return differences == 0 ? 0 : 1;
}
