#!/usr/bin/env bash
# libFuzzer run over the KV codec's C++ decoder (native/tools/kv_codec_fuzz.cpp), with AddressSanitizer and
# UndefinedBehaviorSanitizer, seeded with real containers. Not part of `npm test` (it needs clang, which Debian's
# `clang` package gives: apt-get install clang); the test suite's own fuzz test mutates real files 100k times in JS.
#
#   bash scripts/fuzz-codec.sh [seconds, default 600] [workers, default 1]
#
# Builds into test/.tmp/fuzz-codec/, writes the seeds there, runs for the given time and prints libFuzzer's summary;
# a crash leaves its input (crash-*) in that folder and the script exits non-zero.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
seconds="${1:-600}"
workers="${2:-1}"
out="$root/test/.tmp/fuzz-codec"
command -v clang++ >/dev/null || { echo "fuzz-codec: clang++ is missing (apt-get install clang)" >&2; exit 1; }
mkdir -p "$out/seeds" "$out/corpus"
src=("$root"/native/src/kv_codec_{tables,encode,decode,format,output}.cpp)
flags=(-std=c++17 -O1 -g -pthread -I"$root/native/src")
clang++ "${flags[@]}" -DKV_CODEC_FUZZ_SEEDS "${src[@]}" "$root/native/tools/kv_codec_fuzz.cpp" -o "$out/seed-writer"
"$out/seed-writer" "$out/seeds"
clang++ "${flags[@]}" -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined "${src[@]}" \
    "$root/native/tools/kv_codec_fuzz.cpp" -o "$out/kv_codec_fuzz"
cd "$out"
UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 ./kv_codec_fuzz corpus seeds -max_total_time="$seconds" -jobs="$workers" \
    -workers="$workers" -max_len=1048576 -rss_limit_mb=2048 -print_final_stats=1 2>&1 | tail -40
