// Coded splice parts: a chunk's KV codec container decoded straight into the part's cells (the cache's rows in place,
// or the state blob's), K turned to the cells' positions by the decoder's own rotation table. A chunk read from the
// disk tier then skips its decoded copy in memory and the splice's second copy of it.
#pragma once

#include <cstdint>
#include <vector>

#include "kv_codec.h"
#include "kv_splice_plan.h"

namespace splice {

/**
 * Every coded part's container parsed and checked before any cell is taken: the plan's model fingerprint, each
 * layer's width against the plan's rows, the part's cell count, V in rows, K coded un-rotated where the model has
 * RoPE. The rotation tables are made for the parts' first positions. Entries of parts with rows are empty. Throws
 * std::runtime_error naming the part and the codec's reason.
 */
std::vector<weft_codec::Header> prepareCodedParts(const Plan& plan);

/** Decodes layer il of a coded part into nTokens rows of K at `k` and of V at `v`; throws on a damaged layer. */
void decodeCodedLayer(const Part& part, size_t index, const weft_codec::Header& header, size_t il, uint8_t* k, uint8_t* v);

} // namespace splice
