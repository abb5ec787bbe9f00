#!/usr/bin/env bash
# The KV codec's GPU decoder against the host decoder on a real GPU (native/tools/kv_codec_gpu_check.cpp): about 15 s of
# nvcc, then seconds. It needs nvcc and a GPU only (no llama.cpp build), so a device call can run it on its own:
#   bash scripts/gpu-codec-check.sh [layers 32] [tokens 512] [width 1024] [runs 10]
# The report goes to stdout and, on the device machine, to $OUT/gpu-codec-check.txt.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
command -v nvcc >/dev/null || export PATH="$PATH:/usr/local/cuda/bin"
bin="$(mktemp -d)/kv_codec_gpu_check"
src="$root/native/src"
nvcc -O3 -std=c++17 -arch="${WEFT_CUDA_ARCH_FLAG:-sm_90}" -I"$src" "$root/native/tools/kv_codec_gpu_check.cpp" "$src/kv_codec_cuda.cu" \
    "$src"/kv_codec_{tables,encode,decode,format,output,parallel_plan}.cpp -o "$bin"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
if [ -n "${OUT:-}" ]; then "$bin" "$@" | tee "$OUT/gpu-codec-check.txt"; else "$bin" "$@"; fi
