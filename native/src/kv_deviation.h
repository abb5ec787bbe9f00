#pragma once

#include <napi.h>

/**
 * kvDeviation(spec): Promise<Float32Array>: for each chunk cell, |K moved by delta - captured K|^2 + |V - captured V|^2
 * (hkvd's score), chunks in order.
 */
Napi::Value KvDeviation(const Napi::CallbackInfo& info);
