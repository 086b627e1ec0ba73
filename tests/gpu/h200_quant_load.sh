#!/usr/bin/env bash
# Issue 18 on the H200 device host (torch 2.11.0+cu130, transformers 5.17.0, Python 3.12, nvcc, ninja, no
# registry): the user's path on cuda:0 -- a tiny Llama built on the spot is quantized (gptqmodel: GPTQ and AWQ;
# llm-compressor: compressed-tensors W4A16), saved with its quantization_config, loaded back with
# AutoModelForCausalLM.from_pretrained(device_map="cuda:0") through gptqmodel's CUDA kernels, run forward and
# compared with fp32 (tests/quant_load_validate.py, the same script the CPU fixtures come from).
#   bash tests/gpu/h200_quant_load.sh .carry/quant      (outputs: $OUT/quant-load.tar.gz)
#
# Kernels, in this order, inside QUANT_BUDGET_S (default 480 s for the whole run): exllama v2 for GPTQ and for
# AWQ (JIT compile about 30 s each: 28 s measured on this host before), then Marlin for GPTQ and AWQ only if
# at least 240 s are left (its JIT compile took 186 s here before). Each load runs twice (--repeat-load) in a
# cold extension cache: the first load_seconds minus the second is the compile time; "kernels" in each JSON
# names the class that ran.
#
# What .carry/quant holds (18 wheels, 10.2 MB; the 55 MB limit is checked below), fetched on the development
# machine with Python 3.12 (versions: the CPU run of 2026-12-01, tests/fixtures/quant-load/README.md):
#   D="python3.12 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp
#      --abi cp312 --abi abi3 --abi none --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64
#      --platform manylinux2014_x86_64 --platform any -d .carry/quant"
#   $D optimum==2.3.0
#   $D compressed-tensors==0.19.0
#   $D llmcompressor==0.14.0.1
#   $D torchao==0.18.0
#   $D datasets==5.2.0
#   $D dill==0.4.1
#   $D multiprocess==0.70.19
#   $D loguru==0.7.3
#   $D pydantic==2.14.4
#   $D pydantic-core==2.50.5
#   $D annotated-types==0.8.0
#   $D typing-inspection==0.4.5
# These six are sdists only on PyPI, so they are built into cp312 wheels there (gptqmodel's setup.py is pure
# Python: its kernels compile at first use on the GPU host, not here; pypcre links the host's libpcre2-8.so.0):
#   python3.12 -m pip wheel --no-deps -w .carry/quant gptqmodel==7.6.0 logbar==0.4.15 tokenicer==0.0.14 \
#      defuser==0.0.28 device-smi==0.5.7 pypcre==0.6.4
#   du -cb .carry/quant/*.whl | tail -n 1
# Everything else these imports need is already on the host (tests/fixtures/h200-cu130/host/pip-freeze.txt):
# numpy 2.5.2 stands in for gptqmodel's numpy==2.2.6 pin (--no-deps), as in tests/gpu/device_validate_gptq.sh.
set -u
wheeldir=${1:?usage: h200_quant_load.sh WHEEL_DIR}
OUT=${OUT:-/tmp/envbuilder-out}
budget=${QUANT_BUDGET_S:-480}
limit_bytes=$((55 * 1000 * 1000))
start_all=$SECONDS
res=$(mktemp -d)/quant-load
work=$(mktemp -d)/checkpoints
site=/tmp/site-quant
mkdir -p "$res" "$work" "$OUT"

left() { echo $((budget - (SECONDS - start_all))); }

carried=$(du -cb "$wheeldir"/*.whl | tail -n 1 | cut -f1)
echo "carried wheels: $carried bytes (limit $limit_bytes)" >"$res/carry.txt"
ls -l "$wheeldir" >>"$res/carry.txt"
if [ "$carried" -gt "$limit_bytes" ]; then
  echo "the wheels in $wheeldir exceed 55 MB: $carried bytes" >&2
  exit 3
fi
rm -rf "$site"
python3 -m pip install --no-index --no-deps --no-compile --no-cache-dir --target "$site" "$wheeldir"/*.whl \
  >"$res/pip-install.txt" 2>&1 || { tail -n 20 "$res/pip-install.txt" >&2; exit 3; }
# A cold extension cache, so that the first load of each kernel pays its real JIT compile.
export PYTHONPATH="$site" HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1 GPTQMODEL_TORCH_EXTENSIONS_DIR=/tmp/quant-ext
rm -rf /tmp/quant-ext

capture() {
  local name=$1
  shift
  timeout 60 "$@" >"$res/$name.txt" 2>&1
  echo "exit code: $?" >>"$res/$name.txt"
}

validate() {
  local name=$1 seconds=$2 began=$SECONDS
  shift 2
  timeout "$seconds" python3 tests/quant_load_validate.py --workdir "$work" --device cuda:0 "$@" \
    >"$res/$name.json" 2>"$res/$name.stderr.txt"
  echo "exit code: $? after $((SECONDS - began)) s (limit $seconds s)" >>"$res/$name.stderr.txt"
}

capture nvidia-smi nvidia-smi --query-gpu=name,compute_cap,driver_version,memory.total --format=csv
capture nvcc nvcc --version
capture versions python3 -c "import sys, torch, numpy, transformers, gptqmodel, optimum.version, compressed_tensors, llmcompressor; print(sys.version); print(torch.__version__, torch.version.cuda, torch.cuda.get_device_name(0), torch.cuda.get_device_capability(0)); print('numpy', numpy.__version__, 'transformers', transformers.__version__, 'gptqmodel', gptqmodel.__version__, 'optimum', optimum.version.__version__, 'compressed-tensors', compressed_tensors.__version__, 'llmcompressor', llmcompressor.__version__)"

# 1. make the three checkpoints on cuda:0 (--portable: gptqmodel's torch packers without its g++ pack_block_cpu
#    JIT, about 30 s); load compressed-tensors (no JIT kernel on that path)
validate make 180 --make gptq awq compressed-tensors --load compressed-tensors --dtype float16 --portable
# 2-3. exllama v2, GPTQ then AWQ
#    (backend names as transformers' AwqConfig accepts them; gptqmodel maps them per method: exllama_v2 ->
#    GPTQ_EXLLAMA_V2 / AWQ_EXLLAMA_V2, marlin -> GPTQ_MARLIN / AWQ_MARLIN, gptqmodel/utils/backend.py)
validate gptq-exllamav2 150 --load gptq --backend gptq=exllama_v2 --repeat-load --dtype float16
validate awq-exllamav2 150 --load awq --backend awq=exllama_v2 --repeat-load --dtype float16
# 4. Marlin (sm_90 has it), only with time for its compile
if [ "$(left)" -ge 240 ]; then
  validate marlin "$(($(left) - 15))" --load gptq awq --backend gptq=marlin --backend awq=marlin \
    --repeat-load --dtype float16
else
  echo "Marlin skipped: $(left) s left of $budget s (its JIT compile took 186 s here before)" >"$res/marlin-skipped.txt"
fi
echo "whole run: $((SECONDS - start_all)) s (budget $budget s)" >"$res/elapsed.txt"
ls -lR /tmp/quant-ext >"$res/extensions.txt" 2>&1

tar -C "$(dirname "$res")" -czf "$OUT/quant-load.tar.gz" quant-load
for f in "$res"/*.txt; do
  echo "== $(basename "$f")"
  tail -n 6 "$f"
done
for f in "$res"/*.json; do
  echo "== $(basename "$f")"
  python3 -c "import json, sys; d = json.load(open(sys.argv[1])); [print(c['name'], c['status'], c['seconds'], c['detail'][:200]) for c in d['checks']]" "$f" 2>&1
done
