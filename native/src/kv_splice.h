#pragma once

#include <napi.h>

/**
 * spliceSequenceState(contextHandle, seqId, spec): Promise<{bytesRead, blobBytes, buildMs, setMs, pinned}>.
 * Builds one sequence state from parts (K re-positioned by each part's delta) and loads it into the sequence.
 */
Napi::Value SpliceSequenceState(const Napi::CallbackInfo& info);

/** releasePinnedScratch(): number (bytes of pinned host memory freed). */
Napi::Value ReleasePinnedScratch(const Napi::CallbackInfo& info);

/**
 * kvDeviation(spec): Promise<Float32Array>: for each chunk cell, |K moved by delta - captured K|^2 + |V - captured V|^2
 * (hkvd's score), chunks in order.
 */
Napi::Value KvDeviation(const Napi::CallbackInfo& info);
