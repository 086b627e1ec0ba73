#!/usr/bin/env bash
# GPU run 5 on the H200 device host, from the repository root:
#   bash tests/gpu/h200_run5.sh .carry/run2 .carry/quant
# Two things at once, into $OUT/h200-run5.tar.gz:
#   run2/   tests/gpu/h200_run2.sh again (its carry: bitsandbytes 0.49.2's files and libenvb_ext.so): the live
#           failures under the doctor of this commit (issue 17, item 4: run 2's doctor missed three of them)
#   smoke-gptq.*, smoke-awq.*   `envbuilder smoke --profile gptq|awq` on cuda:0 with the quant_load_<format>
#           stages (issue 18, item 1: quantize a tiny Llama, save, from_pretrained, forward vs fp32) through
#           the kernels transformers and gptqmodel pick by default; .carry/quant holds the wheels that
#           tests/gpu/h200_quant_load.sh names (10.2 MB), installed with pip --target
# The extension cache starts cold, so the gptq smoke pays gptqmodel's JIT compile; the awq smoke reuses it.
set -u
bnbcarry=${1:?usage: h200_run5.sh BNB_CARRY_DIR QUANT_WHEEL_DIR}
quant=${2:?usage: h200_run5.sh BNB_CARRY_DIR QUANT_WHEEL_DIR}
OUT=${OUT:-/tmp/envbuilder-out}
res=$(mktemp -d)/h200-run5
mkdir -p "$res" "$OUT"
began=$SECONDS

OUT=$res/run2-out bash tests/gpu/h200_run2.sh "$bnbcarry" >"$res/run2.txt" 2>&1 &

site=/tmp/site-quant5
rm -rf "$site" /tmp/quant-ext5
python3 -m pip install --no-index --no-deps --no-compile --no-cache-dir --target "$site" "$quant"/*.whl \
  >"$res/pip-install.txt" 2>&1 || { tail -n 20 "$res/pip-install.txt"; exit 3; }
export GPTQMODEL_TORCH_EXTENSIONS_DIR=/tmp/quant-ext5 HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
smoke() {  # smoke PROFILE SECONDS: JSON on stdout, the text progress and the exit code in .stderr.txt
  local t0=$SECONDS
  PYTHONPATH="$site:$PWD" timeout "$2" python3 -m envbuilder smoke --python python3 --profile "$1" --json \
    >"$res/smoke-$1.json" 2>"$res/smoke-$1.stderr.txt"
  echo "exit code: $? after $((SECONDS - t0)) s (limit $2 s)" >>"$res/smoke-$1.stderr.txt"
}
smoke gptq 330
smoke awq $((540 - (SECONDS - began)))
wait
echo "whole run: $((SECONDS - began)) s" >"$res/elapsed.txt"
tar -C "$(dirname "$res")" -czf "$OUT/h200-run5.tar.gz" h200-run5
cat "$res/elapsed.txt"
tail -n 4 "$res/run2.txt"
for p in gptq awq; do
  tail -n 1 "$res/smoke-$p.stderr.txt"
  python3 - "$res/smoke-$p.json" <<'PY'
import json, sys
try:
    doc = json.load(open(sys.argv[1]))
except Exception as exc:  # a timeout leaves no JSON
    sys.exit(f"no JSON: {exc}")
for s in doc.get("stages", []):
    print(f"  {s.get('status'):4} {s.get('name')}: {str(s.get('detail', s.get('message', '')))[:140]}")
PY
done
