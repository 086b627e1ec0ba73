#!/usr/bin/env bash
# GPU run 2 on the H200 device host (issue 17), from the repository root, as root:
#   bash tests/gpu/h200_run2.sh .carry/run2
# .carry/run2 holds (made on the development machine; tests/fixtures/h200-cu130/README.md names the commands):
#   bnb049-tree.tar.xz   the files of PyPI's bitsandbytes-0.49.2-py3-none-manylinux_2_24_x86_64.whl (sha256
#                        54b771f0...1c8c), unzipped and packed with xz: the wheel itself is 60.7 MB, and with the
#                        repository it passes the 64 MiB that can travel. Every file is checked against the
#                        wheel's own RECORD (sha256) before anything runs.
#   libenvb_ext.so       tests/gpu/envb_ext.cpp compiled against torch 2.13.0+cpu (tests/gpu/h200_run1.sh says how)
# What it does, into one tarball $OUT/h200-run2.tar.gz:
#   bnb049/   bitsandbytes 0.49.2 in a real venv beside the host's torch 2.11.0+cu130: the smoke test three times
#             (text, then JSON twice: imports and stages timed apart), python -m bitsandbytes, a 4-bit quantize,
#             doctor --env (healthy)
#   broken/   five failures made live, each: the raw failure (what a user would paste), envbuilder doctor --env
#             (--json and text) in that state, and the smoke test where it says something:
#               nolib        bitsandbytes 0.49.2 without libbitsandbytes_cuda130.so (the library torch's CUDA needs)
#               bnbcuda126   a stray BNB_CUDA_VERSION=126
#               ldpath       LD_LIBRARY_PATH=/usr/local/cuda-12.6/lib64 (absent) with BNB_CUDA_VERSION=126, as
#                            bitsandbytes' own error message advises; and LD_LIBRARY_PATH to the toolkit's CUDA
#                            runtime (/usr/local/cuda/lib64) and to its compat driver library, where present
#               novisible    CUDA_VISIBLE_DEVICES='' (and '7': an index that does not exist)
#               torchext     a torch extension built against torch 2.13.0 loaded beside torch 2.11.0
#   nodriver/ tests/gpu/h200_detect_nodriver.sh (detect with the driver hidden)
# Each capture ends with an "exit code: N" line; a JSON capture's exit code is in NAME.stderr.txt.
set -u
carry=${1:?usage: h200_run2.sh CARRY_DIR}
OUT=${OUT:-/tmp/envbuilder-out}
res=$(mktemp -d)/h200-run2
envs=$(mktemp -d)
mkdir -p "$res/bnb049" "$res/broken" "$res/nodriver" "$OUT"
export HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1 PYTHONPATH=$PWD
began=$SECONDS

capture() {  # capture FILE CMD...: stdout+stderr and the exit code, as a user would paste them
  local file=$1
  shift
  timeout 300 "$@" >"$res/$file" 2>&1
  echo "exit code: $?" >>"$res/$file"
}
capture_json() {  # capture_json NAME CMD...: NAME.json (stdout), NAME.stderr.txt (stderr, exit code)
  local name=$1
  shift
  timeout 300 "$@" >"$res/$name.json" 2>"$res/$name.stderr.txt"
  echo "exit code: $?" >>"$res/$name.stderr.txt"
}

# 0. bitsandbytes 0.49.2's files, checked against the wheel's RECORD.
site=/tmp/site-bnb049
rm -rf "$site" && mkdir -p "$site" && tar -C "$site" -xJf "$carry/bnb049-tree.tar.xz" || exit 3
python3 - "$site" >"$res/bnb049/record-check.txt" 2>&1 <<'PYREC' || { cat "$res/bnb049/record-check.txt"; exit 3; }
import base64, csv, hashlib, pathlib, sys
site = pathlib.Path(sys.argv[1])
record = next(site.glob("bitsandbytes-*.dist-info/RECORD"))
bad, n = [], 0
for path, digest, _size in csv.reader(record.read_text().splitlines()):
    if not digest:
        continue
    algo, want = digest.split("=", 1)
    got = base64.urlsafe_b64encode(hashlib.new(algo, (site / path).read_bytes()).digest()).rstrip(b"=").decode()
    n += 1
    if got != want:
        bad.append(path)
print(f"{record.relative_to(site)}: {n} files checked, {len(bad)} differ {bad}")
sys.exit(1 if bad else 0)
PYREC
nolib=/tmp/site-bnb049-nolib
rm -rf "$nolib" && cp -a "$site" "$nolib" && rm "$nolib/bitsandbytes/libbitsandbytes_cuda130.so"

# Real venvs on the host's Python; a .pth names bitsandbytes' directory and torch's site-packages.
torch_site=$(python3 -c 'import os, torch; print(os.path.dirname(os.path.dirname(torch.__file__)))')
mkenv() {  # mkenv NAME BNB_SITE (addsitedir: the host's own .pth files in torch's site-packages apply too)
  python3 -m venv --without-pip "$envs/$1" || exit 3
  printf '%s\nimport site; site.addsitedir(%s)\n' "$2" "'$torch_site'" \
    >"$(echo "$envs/$1"/lib/python3*/site-packages)/envbuilder-run2.pth"
}
mkenv bnb049 "$site"
mkenv nolib "$nolib"
ok=$envs/bnb049
four_bit='import torch, bitsandbytes.functional as F
x = torch.randn(4096, device="cuda", dtype=torch.float16)
q, s = F.quantize_4bit(x, quant_type="nf4")
print("max abs error", (F.dequantize_4bit(q, s) - x).abs().max().item())'
torch_ext="import torch
print('torch', torch.__version__)
torch.ops.load_library('$PWD/$carry/libenvb_ext.so')
x = torch.ones(2, 2)
print(torch.ops.envb_abi.scale_add(x, x, 1.0))"
doctor() {  # doctor NAME [--log FILE] [VAR=VALUE...]: doctor --env in that state, JSON and text
  local name=$1 env=$2
  shift 2
  env "$@" timeout 300 python3 -m envbuilder doctor --env "$env" --json >"$res/$name.doctor.json" 2>"$res/$name.doctor.stderr.txt"
  echo "exit code: $?" >>"$res/$name.doctor.stderr.txt"
  env "$@" timeout 300 python3 -m envbuilder doctor --env "$env" >"$res/$name.doctor.txt" 2>&1
  echo "exit code: $?" >>"$res/$name.doctor.txt"
}

# 1. The healthy environment, one thing at a time (the smoke test's timings are the figures).
capture host-nvidia-smi.txt nvidia-smi --query-gpu=index,name,pci.device_id,compute_cap,driver_version,memory.total --format=csv
capture host-pip-freeze.txt python3 -m pip list --format=freeze
capture bnb049/smoke.txt python3 -m envbuilder smoke --env "$ok"
capture_json bnb049/smoke python3 -m envbuilder smoke --env "$ok" --json
capture_json bnb049/smoke-again python3 -m envbuilder smoke --env "$ok" --json
echo "healthy part: $((SECONDS - began)) s" >"$res/elapsed.txt"

# 2. Everything else at once (16 cores; each process makes its own CUDA context).
b=broken
capture bnb049/python-m-bitsandbytes.txt "$ok/bin/python" -m bitsandbytes &
capture bnb049/quantize-4bit.txt "$ok/bin/python" -c "$four_bit" &
doctor bnb049/healthy "$ok" &
# nolib: no library for torch's CUDA 13.0
capture $b/nolib-python-m-bitsandbytes.txt "$envs/nolib/bin/python" -m bitsandbytes &
capture $b/nolib-quantize-4bit.txt "$envs/nolib/bin/python" -c "$four_bit" &
capture $b/nolib-smoke.txt python3 -m envbuilder smoke --env "$envs/nolib" --quick &
doctor $b/nolib "$envs/nolib" &
# bnbcuda126: a stray override
BNB_CUDA_VERSION=126 capture $b/bnbcuda126-python-m-bitsandbytes.txt "$ok/bin/python" -m bitsandbytes &
BNB_CUDA_VERSION=126 capture $b/bnbcuda126-quantize-4bit.txt "$ok/bin/python" -c "$four_bit" &
doctor $b/bnbcuda126 "$ok" BNB_CUDA_VERSION=126 &
wait
# ldpath: the advice of bitsandbytes' own error text, followed to a CUDA that is not installed
BNB_CUDA_VERSION=126 LD_LIBRARY_PATH=/usr/local/cuda-12.6/lib64 capture $b/ldpath-missing-quantize-4bit.txt "$ok/bin/python" -c "$four_bit" &
doctor $b/ldpath-missing "$ok" BNB_CUDA_VERSION=126 LD_LIBRARY_PATH=/usr/local/cuda-12.6/lib64 &
if [ -e /usr/local/cuda/lib64/libcudart.so.13 ]; then
  LD_LIBRARY_PATH=/usr/local/cuda/lib64 capture $b/ldpath-toolkit-quantize-4bit.txt "$ok/bin/python" -c "$four_bit" &
  doctor $b/ldpath-toolkit "$ok" LD_LIBRARY_PATH=/usr/local/cuda/lib64 &
fi
compat=$(find /usr/local/cuda*/compat /usr/local/cuda/targets/*/lib/compat -maxdepth 1 -name 'libcuda.so*' 2>/dev/null | head -n 1)
echo "compat libcuda: ${compat:-none found}; toolkit: $(find /usr/local/cuda/lib64/ -maxdepth 1 -name 'libcudart.so*' 2>&1 | tr '\n' ' ')" >"$res/$b/ldpath-what.txt"
if [ -n "$compat" ]; then
  LD_LIBRARY_PATH=$(dirname "$compat") capture $b/ldpath-compat-quantize-4bit.txt "$ok/bin/python" -c "$four_bit" &
  doctor $b/ldpath-compat "$ok" LD_LIBRARY_PATH="$(dirname "$compat")" &
fi
# novisible: no GPU visible to a GPU environment
CUDA_VISIBLE_DEVICES='' capture $b/novisible-quantize-4bit.txt "$ok/bin/python" -c "$four_bit" &
CUDA_VISIBLE_DEVICES='' capture $b/novisible-smoke.txt python3 -m envbuilder smoke --env "$ok" --quick &
CUDA_VISIBLE_DEVICES='' capture_json $b/novisible-smoke python3 -m envbuilder smoke --env "$ok" --quick --json &
CUDA_VISIBLE_DEVICES=7 capture $b/novisible7-smoke.txt python3 -m envbuilder smoke --env "$ok" --quick &
doctor $b/novisible "$ok" CUDA_VISIBLE_DEVICES= &
# torchext: built against torch 2.13.0, loaded beside 2.11.0
capture $b/torchext-load.txt "$ok/bin/python" -c "$torch_ext" &
capture $b/torchext-ldd.txt ldd "$carry/libenvb_ext.so" &
# the driver hidden (private mount namespace)
OUT=$res/nodriver bash tests/gpu/h200_detect_nodriver.sh >/dev/null 2>&1 &
wait
doctor $b/torchext "$ok" &
python3 -m envbuilder doctor --env "$ok" --log "$res/$b/torchext-load.txt" --json >"$res/$b/torchext-log.doctor.json" 2>"$res/$b/torchext-log.doctor.stderr.txt"
echo "exit code: $?" >>"$res/$b/torchext-log.doctor.stderr.txt"
python3 -m envbuilder doctor --env "$ok" --log "$res/$b/torchext-load.txt" >"$res/$b/torchext-log.doctor.txt" 2>&1
echo "exit code: $?" >>"$res/$b/torchext-log.doctor.txt"
wait
echo "whole run: $((SECONDS - began)) s" >>"$res/elapsed.txt"

tar -C "$(dirname "$res")" -czf "$OUT/h200-run2.tar.gz" h200-run2
cat "$res/elapsed.txt" "$res/bnb049/record-check.txt"
tail -n 3 "$res/bnb049/smoke.txt"
for f in "$res"/*/*.txt; do
  case "$f" in *stderr*) continue ;; esac
  echo "${f#"$res"/}: $(grep -m 1 -E 'FAIL|Error|error:' "$f" | cut -c1-150) [$(tail -n 1 "$f")]"
done
