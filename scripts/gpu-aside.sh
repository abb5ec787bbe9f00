#!/usr/bin/env bash
# Moves the tracked files too large to travel beside a carried build (the answer model, 26 MB) out of the working tree
# for a device call, and back after it. The device tool sends the working tree under 64 MiB; .device/ with a carried
# CUDA build (scripts/gpu-run.sh WEFT_SAVE_BUILD) leaves no room for them. skip-worktree keeps `git add -A` from
# staging their absence as a deletion while they are out.
#
#   bash scripts/gpu-aside.sh out     before scripts/gpu-pack.sh and the device call
#   bash scripts/gpu-aside.sh in      after it
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
aside="$root/../.weft-aside"
files=(test/fixtures/models/weft-answers.gguf)
case "${1:-}" in
    out)
        mkdir -p "$aside"
        for f in "${files[@]}"; do
            [ -f "$f" ] || { echo "gpu-aside: $f is not here (already out?)" >&2; continue; }
            git update-index --skip-worktree "$f"
            mkdir -p "$aside/$(dirname "$f")"
            mv "$f" "$aside/$f"
            echo "gpu-aside: $f -> $aside/$f"
        done
        ;;
    in)
        for f in "${files[@]}"; do
            if [ -f "$aside/$f" ]; then mv "$aside/$f" "$f"; echo "gpu-aside: $f back"; fi
            git update-index --no-skip-worktree "$f"
        done
        git diff --quiet -- "${files[@]}" || { echo "gpu-aside: ${files[*]} differ from HEAD" >&2; exit 1; }
        ;;
    *)
        echo "usage: bash scripts/gpu-aside.sh out|in" >&2
        exit 2
        ;;
esac
