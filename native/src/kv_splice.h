#pragma once

#include <napi.h>

/**
 * spliceSequenceState(contextHandle, seqId, spec): Promise<{bytesRead, blobBytes, buildMs, setMs, pinned, inPlace, ...}>.
 * Builds one sequence state from parts (K re-positioned by each part's delta) and loads it into the sequence: in place
 * where the cache is in host memory, through a state blob otherwise.
 */
Napi::Value SpliceSequenceState(const Napi::CallbackInfo& info);

/** releasePinnedScratch(): number (bytes of pinned host memory freed). */
Napi::Value ReleasePinnedScratch(const Napi::CallbackInfo& info);
