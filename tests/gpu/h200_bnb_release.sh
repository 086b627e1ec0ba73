#!/usr/bin/env bash
# One bitsandbytes release beside the H200 host's torch 2.11.0+cu130 (issue 17, item 3), from the repository root:
#   bash tests/gpu/h200_bnb_release.sh .carry/run4/bnb046-tree.tar.xz 0.46.1
# The tarball holds the files of PyPI's wheel, unzipped and packed with xz (the wheels of 0.46.1-0.49.2 are
# 57-70 MiB, too big to travel beside the repository; tests/fixtures/h200-cu130/README.md names the commands).
# Every file is checked against the wheel's own RECORD (sha256) before anything runs. A real venv on the host's
# Python gets a .pth naming bitsandbytes' directory and torch's site-packages. It records, into
# $OUT/bnbVERSION.tar.gz: the RECORD check, envbuilder smoke --env (text and JSON), python -m bitsandbytes, a
# 4-bit quantize on cuda, and envbuilder doctor --env (JSON and text); each capture ends with "exit code: N".
set -u
tree=${1:?usage: h200_bnb_release.sh TREE_TAR_XZ VERSION}
version=${2:?usage: h200_bnb_release.sh TREE_TAR_XZ VERSION}
tag=bnb$(echo "$version" | tr -d .)
OUT=${OUT:-/tmp/envbuilder-out}
res=$(mktemp -d)/$tag
env=$(mktemp -d)/env
site=/tmp/site-$tag
mkdir -p "$res" "$OUT"
export HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1 PYTHONPATH=$PWD

capture() {  # capture FILE CMD...: stdout+stderr and the exit code
  local file=$1
  shift
  timeout 300 "$@" >"$res/$file" 2>&1
  echo "exit code: $?" >>"$res/$file"
}

rm -rf "$site" && mkdir -p "$site" && tar -C "$site" -xJf "$tree" || exit 3
python3 - "$site" "$version" >"$res/record-check.txt" 2>&1 <<'PYREC' || { cat "$res/record-check.txt"; exit 3; }
import base64, csv, hashlib, pathlib, sys
site, version = pathlib.Path(sys.argv[1]), sys.argv[2]
record = site / f"bitsandbytes-{version}.dist-info" / "RECORD"
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
torch_site=$(python3 -c 'import os, torch; print(os.path.dirname(os.path.dirname(torch.__file__)))')
python3 -m venv --without-pip "$env" || exit 3
printf '%s\nimport site; site.addsitedir(%s)\n' "$site" "'$torch_site'" \
  >"$(echo "$env"/lib/python3*/site-packages)/envbuilder-bnb.pth"
four_bit='import torch, bitsandbytes.functional as F
x = torch.randn(4096, device="cuda", dtype=torch.float16)
q, s = F.quantize_4bit(x, quant_type="nf4")
print("max abs error", (F.dequantize_4bit(q, s) - x).abs().max().item())'

capture smoke.txt python3 -m envbuilder smoke --env "$env"
timeout 300 python3 -m envbuilder smoke --env "$env" --json >"$res/smoke.json" 2>"$res/smoke.stderr.txt"
echo "exit code: $?" >>"$res/smoke.stderr.txt"
capture python-m-bitsandbytes.txt "$env/bin/python" -m bitsandbytes
capture quantize-4bit.txt "$env/bin/python" -c "$four_bit"
timeout 300 python3 -m envbuilder doctor --env "$env" --json >"$res/doctor.json" 2>"$res/doctor.stderr.txt"
echo "exit code: $?" >>"$res/doctor.stderr.txt"
capture doctor.txt python3 -m envbuilder doctor --env "$env"
ls "$site/bitsandbytes" >"$res/shipped.txt" 2>&1

tar -C "$(dirname "$res")" -czf "$OUT/$tag.tar.gz" "$tag"
cat "$res/record-check.txt"
tail -n 4 "$res/smoke.txt"
for f in "$res"/*.txt; do
  echo "$(basename "$f"): $(grep -m 1 -E 'FAIL|Error|error' "$f" | cut -c1-160) [$(tail -n 1 "$f")]"
done
