#pragma once

#include <napi.h>

/**
 * spliceSequenceState(contextHandle, seqId, spec): Promise<{bytesRead, blobBytes, buildMs, setMs, pinned}>.
 * Builds one sequence state from parts (K re-positioned by each part's delta) and loads it into the sequence.
 */
Napi::Value SpliceSequenceState(const Napi::CallbackInfo& info);

/** releasePinnedScratch(): number (bytes of pinned host memory freed). */
Napi::Value ReleasePinnedScratch(const Napi::CallbackInfo& info);
