#!/usr/bin/env bash
# GPTQ on the H100 device host: gptqmodel 7.6.0 and the pure-Python pieces it needs, built here as cp312 wheels
# (`python3.12 -m pip wheel --no-deps` of gptqmodel==7.6.0 logbar tokenicer defuser device-smi pypcre datasets
# dill multiprocess torchao) and carried in, installed with pip --target beside the host's torch 2.11.0+cu130.
#   bash tests/gpu/device_validate_gptq.sh .carry/gptq
set -u
wheeldir=${1:?usage: device_validate_gptq.sh WHEEL_DIR}
OUT=${OUT:-/tmp/envbuilder-out}
res=$(mktemp -d)/gptq
mkdir -p "$res" "$OUT"
site=/tmp/site-gptq
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$site" "$wheeldir"/*.whl || exit 3
export PYTHONPATH="$site:$PWD" HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1 GPTQMODEL_TORCH_EXTENSIONS_DIR=/tmp/gptq-ext
capture() {
  local name=$1; shift
  timeout 400 "$@" >"$res/$name.txt" 2>&1
  echo "exit code: $?" >>"$res/$name.txt"
}
capture versions python3 -c "import torch, numpy, transformers, gptqmodel; print(torch.__version__, numpy.__version__, transformers.__version__, gptqmodel.__version__)"
python3 -m envbuilder smoke --python python3 --profile gptq --json >"$res/smoke-gptq.json" 2>"$res/smoke-gptq.stderr.txt"
echo "exit code: $?" >>"$res/smoke-gptq.stderr.txt"
capture smoke-gptq python3 -m envbuilder smoke --python python3 --profile gptq
tar -C "$(dirname "$res")" -czf "$OUT/gptq.tar.gz" gptq
for f in "$res"/*.txt; do echo "== $(basename "$f")"; tail -n 25 "$f"; done
