#!/usr/bin/env bash
# Prepares .device/ (gitignored) for scripts/gpu-run.sh: everything the GPU machine lacks, under the device tool's
# 64 MiB limit for the carried working tree (see shared/design/gpu-recipe.md).
#
#   bash scripts/gpu-pack.sh            then: device run, carry [".device"], command "bash scripts/gpu-run.sh"
#
# With a build carried in .device/build the tree is too large with the answer model in it: `bash scripts/gpu-aside.sh
# out` first and `... in` after the call (it keeps `git add -A` from committing the model's absence).
#
# .device/pack/ gets:
#   node.xz              this machine's node binary, stripped (x86-64, glibc; the GPU machine has none)
#   nodedist-include.tar.xz  Node's headers (/usr/include/node without openssl/, which an N-API addon never includes),
#                        laid out as <nodedir>/include/node for node-gyp --nodedir
#   npm.tar.xz           npm itself (node-llama-cpp's source build runs `npm run`)
#   node_modules.tar.xz  the dependency closure of node-llama-cpp, tsx, node-gyp and node-addon-api from ./node_modules
#                        (plus node_modules/.bin),
#                        without the prebuilt @node-llama-cpp/* binaries, llama/gitRelease.bundle (35 MB),
#                        llama/localBuilds and llama/llama.cpp
#   llama.cpp.tar.xz     the bundled llama.cpp source (git archive of HEAD, i.e. unpatched) without models/ and docs/
#                        (only include/ and ggml/include/ when .device/build/ holds a build from an earlier call)
#   ggml-vocab-llama-spm.gguf   the vocab-only GGUF the fixture writer copies the tokenizer from
#   bundle-head.bundle   the first lines of gitRelease.bundle (`git bundle list-heads` reads only those), so
#                        test/fixtures/llama-source.ts learns the llama.cpp commit without the 35 MB bundle
# Takes about a minute (xz on 2 cores). Prints the sizes and fails when the working tree would exceed 64 MiB.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
pack="$root/.device/pack"
nlc="$root/node_modules/node-llama-cpp"
[ -d "$nlc" ] || { echo "gpu-pack: node_modules/node-llama-cpp is missing (npm ci)" >&2; exit 1; }
git check-ignore -q .device/ || { echo "gpu-pack: .device/ is not gitignored" >&2; exit 1; }
rm -rf "$pack"
mkdir -p "$pack"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
export XZ_DEFAULTS="-T0"

echo "gpu-pack: node $(node --version) from $(command -v node)"
# Debian's node carries its debug info: stripped, it packs 2 MB smaller, room the carried build (.device/build) needs.
nodebin="$(readlink -f "$(command -v node)")"
if command -v strip >/dev/null && strip -o "$tmp/node" "$nodebin" && "$tmp/node" --version >/dev/null; then nodebin="$tmp/node"; fi
xz -6 -c "$nodebin" >"$pack/node.xz" &

# Node's headers for node-gyp: <nodedir>/include/node/{common.gypi,config.gypi,node_api.h,...}.
nodeinc="$(dirname "$(readlink -f "$(command -v node)")")/../include/node"
[ -f "$nodeinc/node_api.h" ] || nodeinc=/usr/include/node
[ -f "$nodeinc/node_api.h" ] || { echo "gpu-pack: Node's headers (include/node/node_api.h) not found" >&2; exit 1; }
mkdir -p "$tmp/nodedist/include"
cp -a "$nodeinc" "$tmp/nodedist/include/node"
rm -rf "$tmp/nodedist/include/node/openssl"
tar -C "$tmp/nodedist" -cJf "$pack/nodedist-include.tar.xz" include &

npmdir="$(npm root -g)/npm"
[ -f "$npmdir/bin/npm-cli.js" ] || { echo "gpu-pack: npm not found at $npmdir" >&2; exit 1; }
tar -C "$(dirname "$npmdir")" -cJf "$pack/npm.tar.xz" npm &

# The llama.cpp source node-llama-cpp bundles, unpatched (scripts/build-llama.mjs applies the patches there). With a
# build carried in .device/build (scripts/gpu-run.sh WEFT_SAVE_BUILD) only the headers the native addon compiles against.
src="$nlc/llama/llama.cpp"
paths=(. ':!models' ':!docs')
if [ -f "$root/.device/build/llama-build.manifest" ]; then
    # Only a build of these very patches spares the compile there (gpu-run.sh checks the whole manifest); for any
    # other the full source must travel, or the build it falls back to has nothing to compile.
    if diff -q <(cd "$root/native/patches" && sha256sum *.diff) \
            <(sed '1,/^--- parts$/!d' "$root/.device/build/llama-build.manifest" | grep -E '^[0-9a-f]{64}  ') >/dev/null; then
        paths=(include ggml/include)
        echo "gpu-pack: .device/build holds a build of these patches: the llama.cpp source is packed as headers only"
    else
        echo "gpu-pack: WARNING: .device/build was built from other patches: packing the full source (the call compiles;" \
            "remove .device/build to make room)" >&2
    fi
fi
if [ -d "$src/.git" ]; then
    git -C "$src" archive --format=tar --prefix=llama.cpp/ HEAD -- "${paths[@]}" | xz -6 >"$pack/llama.cpp.tar.xz"
    git -C "$src" show HEAD:models/ggml-vocab-llama-spm.gguf >"$pack/ggml-vocab-llama-spm.gguf"
else
    git clone -q --bare "$nlc/llama/gitRelease.bundle" "$tmp/llama.git"
    git -C "$tmp/llama.git" archive --format=tar --prefix=llama.cpp/ HEAD -- "${paths[@]}" | xz -6 >"$pack/llama.cpp.tar.xz"
    git -C "$tmp/llama.git" show HEAD:models/ggml-vocab-llama-spm.gguf >"$pack/ggml-vocab-llama-spm.gguf"
fi
# `git bundle list-heads` reads the header only: keep it up to the blank line that ends it.
node -e '
const fs = require("fs");
const b = fs.readFileSync(process.argv[1]).subarray(0, 4096);
const end = b.indexOf("\n\n");
if (end < 0) throw new Error("no bundle header");
fs.writeFileSync(process.argv[2], b.subarray(0, end + 2));
' "$nlc/llama/gitRelease.bundle" "$pack/bundle-head.bundle"
git bundle list-heads "$pack/bundle-head.bundle" >/dev/null

# node_modules: the closure of what the GPU run executes, resolved the way Node does (nested first, then upwards).
node - "$root" >"$tmp/modules.txt" <<'EOF'
const fs = require("fs"), path = require("path");
const root = process.argv[2];
const roots = ["node-llama-cpp", "tsx", "node-gyp", "node-addon-api", "node-api-headers"];
const seen = new Map(); // real path -> the path under root it was reached by (node_modules may be a symlink, as in a git worktree)
function resolveFrom(dir, name) {
    for (let d = dir; ; d = path.dirname(d)) {
        const candidate = path.join(d, "node_modules", name);
        if (fs.existsSync(path.join(candidate, "package.json")))
            return candidate;
        if (d === root || d === path.dirname(d))
            return null;
    }
}
function visit(dir) {
    const real = fs.realpathSync(dir);
    if (seen.has(real)) return;
    seen.set(real, dir);
    const pkg = JSON.parse(fs.readFileSync(path.join(dir, "package.json"), "utf8"));
    const deps = {...pkg.dependencies, ...pkg.optionalDependencies};
    for (const name of Object.keys(deps)) {
        if (name.startsWith("@node-llama-cpp/")) continue; // prebuilt binaries: the run builds its own
        const found = resolveFrom(dir, name);
        if (found) visit(found);
        else if (!(pkg.optionalDependencies && name in pkg.optionalDependencies))
            console.error(`gpu-pack: ${pkg.name} needs ${name}, which is not installed`);
    }
}
for (const name of roots) {
    const found = resolveFrom(root, name);
    if (!found) { console.error(`gpu-pack: ${name} is not installed`); process.exit(1); }
    visit(found);
}
for (const dir of [...seen.values()].sort()) console.log(path.relative(root, dir));
EOF
echo "gpu-pack: $(wc -l <"$tmp/modules.txt") packages in the node_modules closure"
# Packages nested inside another package's folder are copied with it; list only the outermost ones.
awk '{ keep = 1; for (i = 1; i <= n; i++) if (index($0, kept[i] "/") == 1) { keep = 0; break } if (keep) kept[++n] = $0 } END { for (i = 1; i <= n; i++) print kept[i] }' \
    "$tmp/modules.txt" >"$tmp/outer.txt"
# node-llama-cpp's build runs `npm run cmake-js-llama`, which needs node_modules/.bin (links; dangling ones are harmless).
echo node_modules/.bin >>"$tmp/outer.txt"
tar -C "$root" -cf - \
    --exclude='node_modules/node-llama-cpp/llama/gitRelease.bundle' \
    --exclude='node_modules/node-llama-cpp/llama/localBuilds' \
    --exclude='node_modules/node-llama-cpp/llama/llama.cpp' \
    --exclude='node_modules/node-llama-cpp/llama/lastBuild.json' \
    --exclude='node_modules/node-llama-cpp/llama/weft-patches.json' \
    --exclude='node_modules/node-llama-cpp/llama/.llama.cpp*' \
    --exclude='node_modules/@node-llama-cpp' \
    --exclude='*.map' \
    -T "$tmp/outer.txt" | xz -6 >"$pack/node_modules.tar.xz"
wait

echo "gpu-pack: .device/pack:"
ls -l "$pack" | awk 'NR > 1 { printf "  %-28s %6.1f MiB\n", $9, $5 / 1048576 }'
deleted="$(git ls-files --deleted)"
if [ -n "$deleted" ]; then
    echo "gpu-pack: WARNING: tracked files missing from the working tree (a commit of git add -A would delete them;" \
        "scripts/gpu-aside.sh moves files out safely): $deleted" >&2
fi
carried=$(du -sb "$root/.device" | cut -f1)
# Tracked and untracked-not-ignored files travel too.
tree=$( (git ls-files -z --cached --others --exclude-standard | xargs -0 -r stat -c %s -- 2>/dev/null || true) | awk '{ s += $1 } END { print s + 0 }')
total=$((carried + tree))
printf 'gpu-pack: .device %.1f MiB + working tree %.1f MiB = %.1f MiB (limit 64 MiB)\n' \
    "$(echo "$carried / 1048576" | bc -l)" "$(echo "$tree / 1048576" | bc -l)" "$(echo "$total / 1048576" | bc -l)"
if [ "$total" -gt $((62 * 1048576)) ]; then
    echo "gpu-pack: too big for one device call (keep 2 MiB of margin)" >&2
    exit 1
fi
