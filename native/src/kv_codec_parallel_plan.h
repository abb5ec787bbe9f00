// The host's half of the parallel decoder (kv_codec_parallel.h): a container's layers checked (checksums) and each
// section parsed into the plans the steps read, with every size checked as the host decoder checks it.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "kv_codec.h"
#include "kv_codec_parallel.h"

namespace weft_codec {

struct ParallelPlan {
    /** Layer il's K is sections[2 * il], its V sections[2 * il + 1]. */
    std::vector<parallel::SectionPlan> sections;
    std::vector<parallel::ChannelPlan> channels;
    /** Scratch the steps need: symbols (1 byte) and values (4 bytes) per value, row counts per row (+1 per section). */
    uint64_t values = 0;
    uint32_t rows = 0;
};

/**
 * Plans the decode of every layer of a container that parseHeader accepted into `out` (which may be device memory:
 * the plan only records the pointers). `classStride`: entries per table class in the slot array the steps will read
 * (4096 for a packed copy; parallelSlotsOnHost() gives the host's own tables and their stride). Checks each layer's
 * checksum and parses each section (parseSection), so a damaged file fails here as in decodeLayer.
 */
Error planParallelDecode(const uint8_t* data, size_t size, const Header& header, const std::vector<LayerOut>& out, uint32_t classStride,
    ParallelPlan& plan, std::string& detail);

/** The host's entropy tables as a slot array: its base and the entries from one class to the next. */
const uint32_t* parallelSlotsOnHost(uint32_t& classStride);

/** The tables packed as [class][4096] slots, as a device copy holds them. */
std::vector<uint32_t> packedParallelSlots();

/** A SectionError's words, for an error's detail. */
const char* sectionErrorText(uint32_t error);

} // namespace weft_codec
