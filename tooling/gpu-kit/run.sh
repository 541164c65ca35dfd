#!/usr/bin/env bash
# deer-bench GPU kit launcher (copied into the kit by tooling/gpu-kit/build.sh; see its README).
#
#   bash .kit/run.sh                           # the kit's grid (below), then the Python baselines
#   bash .kit/run.sh --quick                   # a one-minute smoke test of the same
#   bash .kit/run.sh [deer-bench flags] [--no-baselines]
#
# With no flags, deer-bench runs the kit's grid: --backend webgpu, GRU nh 1,8,32,64 (dense, and
# quasi for nh > 1) and a 64-wide GRU of 8 heads, T 1e4,1e5,1e6, batch 16, no onnxruntime (a CPU
# baseline; --no-ort keeps the GPU machine's minutes for the GPU baselines), skipping points past
# --max-time 20 s per run and any that would start after --deadline (KIT_BENCH_S, 165 s).
# Then, where python3 has them, the baselines on the same problems, into the same folder:
# torch-gru.py (torch.nn.GRU, cuDNN; KIT_TORCH_S, 30 s) and jax-deer.py (DEER in JAX with
# lax.associative_scan; KIT_JAX_S, 100 s). Every part writes its results point by point
# (points.jsonl, torch-gru.json, jax-deer.json), so a run that is cut short keeps what it measured.
# The whole default run is sized to about 8 minutes on an H100-class GPU (tooling/gpu-kit/README.md).
#
# Needs no Node.js, no package registry and no network: it unpacks the kit's Node, Dawn, the
# Vulkan loader (libvulkan1 .deb, with dpkg -x into a private prefix, never into /) and
# onnxruntime into a runtime folder, points Vulkan at the NVIDIA driver when it finds it, prints
# nvidia-smi and the WebGPU adapter, then runs the bundled bench with the flags given.
#
# Environment:
#   OUT                  where results go when no --out is given (default: ./kit-out)
#   DEER_KIT_RT          runtime folder, about 170 MB unpacked (default: ${TMPDIR:-/tmp}/deer-kit-<kit
#                        id>); reused by later runs of the same kit
#   DEER_KIT_ADAPTER     required | optional (default: required for --backend webgpu or no
#                        --backend, optional for other backends)
#   VK_DRIVER_FILES      set it yourself to choose the Vulkan driver; otherwise see below
#   KIT_BENCH_S, KIT_TORCH_S, KIT_JAX_S   the default run's deadlines (seconds) of its three parts
#   KIT_PYTHON           the Python that runs the baselines (default python3)
#   KIT_NODE_FLAGS       flags for the bench's Node, e.g. "--cpu-prof --cpu-prof-dir=DIR" (which
#                        NODE_OPTIONS refuses)
#
# Writes, beside the bench's results.json and SVGs in the --out folder: run.log (all it printed)
# and kit-env.json (the kit's build and versions, nvidia-smi, the adapter probe, the flags).
#
# Exit status: the bench's (0 ok, 1 a point failed, 2 bad flag or backend unavailable), 3 no
# WebGPU adapter where one is required, 4 the kit is broken or incomplete (checksum, missing tool).
set -euo pipefail

KIT=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
say() { printf '%s\n' "kit: $*" >&2; }
die() {
  printf '%s\n' "kit: error: $*" >&2
  exit 4
}

[ "$(uname -s)-$(uname -m)" = Linux-x86_64 ] || die "this kit is for Linux x86-64, not $(uname -s)-$(uname -m)"
[ -f "$KIT/kit.json" ] && [ -f "$KIT/blobs/MANIFEST" ] || die "$KIT is not a complete kit (no kit.json or blobs/MANIFEST)"
# Every run: the kit is copied between machines, and a partial copy should fail here, clearly.
(cd "$KIT" && sha256sum --quiet -c SHA256SUMS) >&2 || die "kit files do not match $KIT/SHA256SUMS (incomplete or edited copy?)"
KIT_ID=$(sha256sum "$KIT/SHA256SUMS" | cut -c1-16)

# ---------------------------------------------------------------- flags the launcher looks at
backend="" out="" passive=0 quick=0 baselines=1 nh="" ts="" batch=""
args=()
for a in "$@"; do
  if [ "$a" = --no-baselines ]; then baselines=0; else args+=("$a"); fi
done
for ((i = 0; i < ${#args[@]}; i++)); do
  a=${args[i]}
  case "$a" in
    --backend) backend=${args[i + 1]:-} ;;
    --backend=*) backend=${a#*=} ;;
    --out) out=${args[i + 1]:-} ;;
    --out=*) out=${a#*=} ;;
    --quick) quick=1 ;;
    --nh) nh=${args[i + 1]:-} ;;
    --nh=*) nh=${a#*=} ;;
    --T | --t) ts=${args[i + 1]:-} ;;
    --T=* | --t=*) ts=${a#*=} ;;
    --batch) batch=${args[i + 1]:-} ;;
    --batch=*) batch=${a#*=} ;;
    --from | --from=* | --help | -h) passive=1 ;; # replot or help: no GPU work, no extra files
  esac
done
# Flags other than --out: none means the kit's own grid.
others=0
for ((i = 0; i < ${#args[@]}; i++)); do
  case "${args[i]}" in
    --out) i=$((i + 1)) ;;
    --out=*) ;;
    *) others=$((others + 1)) ;;
  esac
done
default_run=0
if [ "$others" = 0 ]; then
  # The kit's grid: sized to about 8 minutes with the baselines on an H100-class GPU (README.md).
  default_run=1
  backend=webgpu
  args+=(--backend webgpu --nh 1,8,32,64 --T 1e4,1e5,1e6 --heads 8 --heads-size 64 --quasi --batch 16
    --warmup 1 --repeats 3 --budget 3 --max-time 20 --max-memory 64GiB --no-ort --deadline "${KIT_BENCH_S:-165}")
  nh=1,8,32,64 ts=1e4,1e5,1e6
fi
# The kit is for webgpu: without --backend, say so (the folder name and the baselines follow it).
if [ "$passive" = 0 ] && [ -z "$backend" ]; then
  backend=webgpu
  args+=(--backend webgpu)
fi
if [ "$passive" = 0 ] && [ -z "$out" ]; then
  out="${OUT:-$PWD/kit-out}/deer-bench-${backend:-auto}-$(date -u +%Y%m%dT%H%MZ)"
  args+=(--out "$out")
fi
adapter_policy=${DEER_KIT_ADAPTER:-}
if [ -z "$adapter_policy" ]; then
  case "$backend" in "" | webgpu) adapter_policy=required ;; *) adapter_policy=optional ;; esac
fi
case "$adapter_policy" in required | optional) ;; *) die "DEER_KIT_ADAPTER must be required or optional" ;; esac

# ---------------------------------------------------------------- unpacking
unxz_to() { # unxz_to SRC.xz DEST: xz, or Python's lzma where xz is not installed
  if command -v xz >/dev/null; then
    xz -dc "$1" >"$2"
  elif command -v python3 >/dev/null; then
    python3 -c 'import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2], "wb"))' "$1" "$2"
  else
    die "need xz or python3 to unpack $1"
  fi
}

deb_extract() { # deb_extract FILE.deb DIR: dpkg -x, or Python (ar + tarfile) without dpkg
  if command -v dpkg >/dev/null; then
    dpkg -x "$1" "$2"
  elif command -v python3 >/dev/null; then
    python3 - "$1" "$2" <<'PY'
import io, sys, tarfile
deb, dest = sys.argv[1], sys.argv[2]
data = open(deb, "rb").read()
assert data[:8] == b"!<arch>\n", "not a .deb (ar) archive"
pos = 8
while pos < len(data):
    name = data[pos:pos + 16].decode().strip().rstrip("/")
    size = int(data[pos + 48:pos + 58].decode().strip())
    body = data[pos + 60:pos + 60 + size]
    if name.startswith("data.tar"):
        with tarfile.open(fileobj=io.BytesIO(body)) as t:
            t.extractall(dest, **({"filter": "data"} if hasattr(tarfile, "data_filter") else {}))
        break
    pos += 60 + size + (size & 1)
else:
    sys.exit("no data.tar member in " + deb)
PY
  else
    die "need dpkg or python3 to unpack $1"
  fi
}

unpack() { # fill $1 from the kit: app files, then every blob in blobs/MANIFEST
  local rt=$1
  say "unpacking into $rt"
  rm -rf "$rt"
  mkdir -p "$rt"
  cp -R "$KIT/app" "$rt/app"
  local kind blob dest
  while read -r kind blob dest; do
    case "$kind" in
      '' | '#'*) continue ;;
      xz)
        mkdir -p "$(dirname "$rt/$dest")"
        unxz_to "$KIT/blobs/$blob" "$rt/$dest"
        chmod +x "$rt/$dest"
        ;;
      deb)
        mkdir -p "$rt/$dest"
        deb_extract "$KIT/blobs/$blob" "$rt/$dest"
        ;;
      *) die "blobs/MANIFEST: unknown kind '$kind'" ;;
    esac
  done <"$KIT/blobs/MANIFEST"
  echo "$KIT_ID" >"$rt/.kit-id"
}

# Outside the kit, so that the kit folder stays small enough to copy to another machine.
RT=${DEER_KIT_RT:-${TMPDIR:-/tmp}/deer-kit-$KIT_ID}
mkdir -p "$RT" 2>/dev/null && [ -w "$RT" ] || die "cannot write the runtime folder $RT (set DEER_KIT_RT)"
RT=$(cd "$RT" && pwd)
if [ "$(cat "$RT/.kit-id" 2>/dev/null)" != "$KIT_ID" ]; then unpack "$RT"; fi
NODE=$RT/node/bin/node
[ -x "$NODE" ] || die "no Node binary at $NODE"

# ---------------------------------------------------------------- Vulkan
# The loader and the glvnd libraries NVIDIA's Vulkan driver (libGLX_nvidia.so.0) loads beside it
# (libGLdispatch, libGLX, libEGL, libOpenGL, libGL, libGLESv2): a bare image has none of them.
VKLIB=$RT/vulkan/usr/lib/x86_64-linux-gnu
[ -e "$VKLIB/libvulkan.so.1" ] || die "the Vulkan loader is missing from $VKLIB"
[ -e "$VKLIB/libGLdispatch.so.0" ] || die "the glvnd libraries are missing from $VKLIB (kit built before they were carried?)"
HOST_LD_LIBRARY_PATH=${LD_LIBRARY_PATH:-}
export LD_LIBRARY_PATH="$VKLIB${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
# GKE-style driver mounts keep the NVIDIA libraries here, outside the linker's cache.
for d in /usr/local/nvidia/lib64 /usr/local/nvidia/lib; do
  if [ -d "$d" ] && [[ ":$LD_LIBRARY_PATH:" != *":$d:"* ]]; then LD_LIBRARY_PATH="$LD_LIBRARY_PATH:$d"; fi
done

if [ -n "${VK_DRIVER_FILES:-}" ]; then
  say "VK_DRIVER_FILES=$VK_DRIVER_FILES (from the environment)"
else
  for f in /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json /usr/share/vulkan/icd.d/nvidia_icd.json \
    /etc/vulkan/icd.d/nvidia_icd.json; do
    if [ -f "$f" ]; then
      export VK_DRIVER_FILES=$f
      break
    fi
  done
  if [ -z "${VK_DRIVER_FILES:-}" ]; then
    # No ICD manifest, but the driver's Vulkan library may still be there: describe it ourselves.
    glx=""
    for d in /usr/local/nvidia/lib64 /usr/lib/x86_64-linux-gnu /usr/lib64 /usr/lib; do
      if [ -e "$d/libGLX_nvidia.so.0" ]; then
        glx=$d/libGLX_nvidia.so.0
        break
      fi
    done
    if [ -n "$glx" ]; then
      printf '{"file_format_version": "1.0.0", "ICD": {"library_path": "%s", "api_version": "1.3.0"}}\n' "$glx" \
        >"$RT/nvidia_icd.json"
      export VK_DRIVER_FILES=$RT/nvidia_icd.json
      say "no nvidia_icd.json installed; wrote $VK_DRIVER_FILES for $glx"
    elif command -v nvidia-smi >/dev/null; then
      say "an NVIDIA driver is present but not its Vulkan part (no nvidia_icd.json, no libGLX_nvidia.so.0);"
      say "  in a container, the 'graphics' driver capability provides it (NVIDIA_DRIVER_CAPABILITIES=compute,utility,graphics)"
    fi
  fi
  say "VK_DRIVER_FILES=${VK_DRIVER_FILES:-unset, so the loader searches its default folders}"
fi

# --help and --from (replot a results.json) touch no GPU: no probe, no extra files.
read -r -a node_flags <<<"${KIT_NODE_FLAGS:-}"
if [ "$passive" = 1 ]; then exec "$NODE" "${node_flags[@]}" "$RT/app/deer-bench.mjs" "${args[@]}"; fi

# ---------------------------------------------------------------- what runs where
echo "=== nvidia-smi"
smi="nvidia-smi: not found"
if command -v nvidia-smi >/dev/null; then smi=$(nvidia-smi 2>&1 || true); fi
printf '%s\n' "$smi"

echo "=== WebGPU adapter"
probe=$(mktemp "${TMPDIR:-/tmp}/deer-kit-probe.XXXXXX")
trap 'rm -f "$probe" "$probe.smi"' EXIT
trap 'exit 143' TERM
trap 'exit 130' INT
set +e
"$NODE" "$RT/app/probe-adapter.mjs" --json "$probe"
probe_rc=$?
set -e
if [ "$probe_rc" -ne 0 ]; then
  echo "--- Vulkan loader diagnostics (VK_LOADER_DEBUG=error,warn,driver)"
  VK_LOADER_DEBUG=error,warn,driver "$NODE" "$RT/app/probe-adapter.mjs" 2>&1 >/dev/null | tail -n 40 || true
  if [ "$adapter_policy" = required ]; then
    printf '%s\n' "kit: error: no WebGPU adapter (probe exit $probe_rc), so the webgpu backend cannot run." \
      "  Vulkan loader: $VKLIB; VK_DRIVER_FILES=${VK_DRIVER_FILES:-unset}" \
      "  Check the NVIDIA driver's Vulkan ICD (nvidia_icd.json, libGLX_nvidia.so.0), or run --backend cpu." >&2
    exit 3
  fi
  say "no WebGPU adapter; going on since --backend ${backend} does not need one"
fi

echo "=== deer-bench ${args[*]}"
# Beside the bench's results.json and SVGs: run.log (what was printed) and kit-env.json (the kit's
# build, nvidia-smi, the adapter probe, the flags): few files, as the device returns at most 8.
mkdir -p "$out"
smi_file=$probe.smi
printf '%s\n' "$smi" >"$smi_file"
"$NODE" -e '
  const fs = require("node:fs");
  const [kitJson, probe, smi, file, ...args] = process.argv.slice(1);
  const read = (f) => { try { return JSON.parse(fs.readFileSync(f, "utf8")); } catch { return null; } };
  const kit = read(kitJson);
  delete kit.files;
  const env = { tool: "deer-bench-gpu-kit", ranAt: new Date().toISOString(), args, kit,
    nvidiaSmi: fs.readFileSync(smi, "utf8"), probe: read(probe) };
  fs.writeFileSync(file, JSON.stringify(env, null, 2) + "\n");
' -- "$KIT/kit.json" "$probe" "$smi_file" "$out/kit-env.json" "${args[@]}"
set +e
"$NODE" "${node_flags[@]}" "$RT/app/deer-bench.mjs" "${args[@]}" 2>&1 | tee "$out/run.log"
status=${PIPESTATUS[0]}
set -e

# ---------------------------------------------------------------- the Python baselines
# The same problems (GRU, input size = hidden size, batch 16, float32, time-major) in PyTorch
# (cuDNN) and in JAX (DEER with lax.associative_scan), where python3 has them; with the host's
# own library path (the kit's loader is for Node and Dawn).
PY=${KIT_PYTHON:-python3}
baseline() { # baseline NAME MODULE SCRIPT DEADLINE: run SCRIPT on the bench's grid into $out
  local name=$1 module=$2 script=$3 deadline=$4 pyargs=()
  if ! command -v "$PY" >/dev/null || ! LD_LIBRARY_PATH=$HOST_LD_LIBRARY_PATH "$PY" -c "import $module" 2>/dev/null; then
    echo "=== $name: skipped ($PY cannot import $module)" | tee -a "$out/run.log"
    return 0
  fi
  if [ "$quick" = 1 ]; then pyargs+=(--quick); fi
  if [ -n "$nh" ]; then pyargs+=(--nh "$nh"); fi
  if [ -n "$ts" ]; then pyargs+=(--T "$ts"); fi
  if [ -n "$batch" ]; then pyargs+=(--batch "$batch"); fi
  if [ "$default_run" = 1 ]; then pyargs+=(--budget 3 --max-time 20 --deadline "$deadline"); fi
  echo "=== $name ${pyargs[*]}" | tee -a "$out/run.log"
  set +e
  PYTHONUNBUFFERED=1 LD_LIBRARY_PATH=$HOST_LD_LIBRARY_PATH "$PY" "$RT/app/$script" "${pyargs[@]}" --out "$out" 2>&1 |
    tee -a "$out/run.log"
  local rc=${PIPESTATUS[0]}
  set -e
  [ "$rc" = 0 ] || say "$name exited with $rc (its results so far are in $out)"
}
if [ "$baselines" = 1 ] && [ "${backend:-webgpu}" = webgpu ]; then
  baseline "torch.nn.GRU (cuDNN)" torch torch-gru.py "${KIT_TORCH_S:-30}"
  baseline "DEER in JAX" jax jax-deer.py "${KIT_JAX_S:-100}"
fi
say "results (results.json, points.jsonl, SVGs, torch-gru.json, jax-deer.json where run), run.log and kit-env.json are in $out"
exit "$status"
