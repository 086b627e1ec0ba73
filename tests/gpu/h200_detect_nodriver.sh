#!/usr/bin/env bash
# Detection without a driver, on the real GPU host (issue 16), from the repository root, as root:
#   OUT=/tmp/envbuilder-out bash tests/gpu/h200_detect_nodriver.sh
# First the normal `envbuilder detect` (text and --json). Then, in a private mount namespace (unshare -m, so
# nothing outside this script sees a change), the driver is hidden the way a machine without it looks:
#   /proc/driver/nvidia and /sys/module/nvidia   an empty directory bind-mounted over each
#   nvidia-smi (every one on PATH)                /dev/null bind-mounted over it (no longer executable)
#   libnvidia-ml.so* (NVML: from ldconfig -p,    /dev/null bind-mounted over it (dlopen fails)
#     and the file pynvml itself loads)
# and `envbuilder detect --json`, `detect` and `resolve` run again. The GPU stays on the PCI bus
# (/sys/bus/pci/devices) and its /dev/nvidia* nodes stay (they cannot be hidden without replacing /dev).
# If unshare is refused (not root, no CAP_SYS_ADMIN), the output says so and the normal detect is still there.
# Writes into $OUT: normal-detect.{json,txt}, nodriver-{detect.json,detect.txt,resolve.txt,hidden.txt},
# summary.txt; each capture ends with an "exit code: N" line.
set -u
OUT=${OUT:-/tmp/envbuilder-out}
PY=${PYTHON:-python3}
mkdir -p "$OUT"

capture() {  # capture FILE CMD...: stdout+stderr and the exit code
  local file=$1
  shift
  timeout 300 "$@" >"$OUT/$file" 2>&1
  echo "exit code: $?" >>"$OUT/$file"
}

hide() {  # hide PATH: an empty directory over a directory, /dev/null over a file
  local path=$1 empty=$2
  if [ -d "$path" ]; then
    mount --bind "$empty" "$path" && echo "hidden: $path (empty directory)" || echo "could not hide: $path"
  elif [ -e "$path" ]; then
    mount --bind /dev/null "$path" && echo "hidden: $path (/dev/null)" || echo "could not hide: $path"
  else
    echo "absent already: $path"
  fi
}

inside() {  # runs in the private mount namespace
  local empty lib smi
  empty=$(mktemp -d)
  {
    hide /proc/driver/nvidia "$empty"
    hide /sys/module/nvidia "$empty"
    while IFS= read -r smi; do
      hide "$smi" "$empty"
    done < <(type -aP nvidia-smi; [ -e /usr/lib/wsl/lib/nvidia-smi ] && echo /usr/lib/wsl/lib/nvidia-smi)
    # NVML's library wherever the dynamic loader finds it: the ld.so cache, and the file pynvml really loads
    # (a driver outside the cache, e.g. through LD_LIBRARY_PATH, is found that way)
    while IFS= read -r lib; do
      hide "$lib" "$empty"
      [ "$(readlink -f "$lib")" = "$lib" ] || hide "$(readlink -f "$lib")" "$empty"
    done < <({
      ldconfig -p 2>/dev/null | awk '/libnvidia-ml\.so/ {print $NF}'
      "$PY" -c 'import pynvml
try:
    pynvml.nvmlInit()  # loads the library first; the init itself may fail once /proc/driver/nvidia is hidden
except pynvml.NVMLError:
    pass
print("\n".join({l.split()[-1] for l in open("/proc/self/maps") if "libnvidia-ml" in l}))' 2>/dev/null
    } | sort -u)
    echo "--- what detection can still see"
    echo "/proc/driver/nvidia: $(find /proc/driver/nvidia -mindepth 1 -maxdepth 1 2>&1 | tr "\n" " ")"
    echo "/sys/module/nvidia/version: $(cat /sys/module/nvidia/version 2>&1)"
    # as envbuilder looks (bash's `type -P` would still name a file that is no longer executable)
    echo "nvidia-smi on PATH: $("$PY" -c 'import shutil; print(shutil.which("nvidia-smi") or "none")')"
    echo "NVML: $("$PY" -c 'import pynvml
try:
    pynvml.nvmlInit()
    print("answers (not hidden)")
except pynvml.NVMLError as exc:
    print(exc)' 2>&1)"
    echo "NVIDIA PCI functions: $(grep -l 0x10de /sys/bus/pci/devices/*/vendor 2>/dev/null | tr '\n' ' ')"
  } >"$OUT/nodriver-hidden.txt" 2>&1
  capture nodriver-detect.json "$PY" -m envbuilder detect --json
  capture nodriver-detect.txt "$PY" -m envbuilder detect
  capture nodriver-resolve.txt "$PY" -m envbuilder resolve
}

if [ "${1:-}" = "--inside" ]; then
  inside
  exit 0
fi

capture normal-detect.json "$PY" -m envbuilder detect --json
capture normal-detect.txt "$PY" -m envbuilder detect

if [ "$(id -u)" -ne 0 ]; then
  echo "not run: the no-driver case needs root (unshare -m and bind mounts); uid is $(id -u)" >"$OUT/nodriver-detect.txt"
elif ! unshare -m --propagation private true 2>"$OUT/unshare-error.txt"; then
  echo "not run: unshare -m was refused: $(cat "$OUT/unshare-error.txt")" >"$OUT/nodriver-detect.txt"
else
  rm -f "$OUT/unshare-error.txt"
  OUT=$OUT PYTHON=$PY unshare -m --propagation private bash "$0" --inside
fi

{
  echo "== summary (normal, then without the driver)"
  for doc in normal-detect.json nodriver-detect.json; do
    [ -f "$OUT/$doc" ] || { echo "$doc: missing"; continue; }
    "$PY" - "$OUT/$doc" <<'PYSUM'
import json, sys
path = sys.argv[1]
text = open(path, encoding="utf-8").read().rsplit("exit code:", 1)[0]
try:
    doc = json.loads(text)
except ValueError:
    print(f"{path}: not JSON: {text.strip()[:300]}")
    raise SystemExit(0)
gpus = ", ".join(f"{g['name']} cc={g['cc'] or g.get('cc_by_name')} pci={g['pci_id']}" for g in doc["gpus"]) or "none"
print(f"{path.rsplit('/', 1)[-1]}: gpus [{gpus}] via {doc['gpu_source']}; driver {doc['driver']} "
      f"({doc['driver_source']}); advice: {doc.get('driver_advice')}")
PYSUM
  done
  echo "== hidden"
  cat "$OUT/nodriver-hidden.txt" 2>/dev/null || echo "(nothing hidden: see nodriver-detect.txt)"
} | tee "$OUT/summary.txt"
