#!/usr/bin/env bash
# Real GPU validation, run on the H100 device host from the repository root:
#   bash tests/gpu/device_validate.sh .carry/bnb050   (bitsandbytes 0.50.2: the healthy row, plus failures)
#   bash tests/gpu/device_validate.sh .carry/bnb047   (bitsandbytes 0.47.0: no cuda130 library)
# The host's python3 holds torch 2.11.0+cu130 and transformers; the bitsandbytes wheel is carried in (no
# registry is reachable there) and installed with pip --target. Everything lands in one tarball under $OUT.
set -u
wheeldir=${1:?usage: device_validate.sh WHEEL_DIR}
OUT=${OUT:-/tmp/envbuilder-out}
tag=$(basename "$wheeldir")
res=$(mktemp -d)/$tag
mkdir -p "$res" "$OUT"
site=/tmp/site-$tag
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$site" "$wheeldir"/*.whl || exit 3
export PYTHONPATH="$site:$PWD" HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
capture() {  # capture NAME CMD...: stdout+stderr and the exit code, as a user would paste them
  local name=$1; shift
  "$@" >"$res/$name.txt" 2>&1
  echo "exit code: $?" >>"$res/$name.txt"
}
capture nvidia-smi-query nvidia-smi --query-gpu=index,name,compute_cap,driver_version,memory.total --format=csv,noheader,nounits
capture detect python3 -m envbuilder detect --json
capture python-m-bitsandbytes python3 -m bitsandbytes
capture smoke python3 -m envbuilder smoke --python python3
python3 -m envbuilder smoke --python python3 --json >"$res/smoke.json" 2>"$res/smoke.stderr.txt"
echo "smoke json exit: $?" >>"$res/smoke.stderr.txt"
capture doctor python3 -m envbuilder doctor --python python3
four_bit='import torch, bitsandbytes.functional as F
x = torch.randn(4096, device="cuda", dtype=torch.float16)
q, s = F.quantize_4bit(x, quant_type="nf4")
print("max abs error", (F.dequantize_4bit(q, s) - x).abs().max().item())'
capture quantize-4bit python3 -c "$four_bit"
load_4bit='import os, tempfile, torch
from transformers import LlamaConfig, LlamaForCausalLM, AutoModelForCausalLM, BitsAndBytesConfig
cfg = LlamaConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4, vocab_size=256)
d = tempfile.mkdtemp(); LlamaForCausalLM(cfg).save_pretrained(d)
m = AutoModelForCausalLM.from_pretrained(d, quantization_config=BitsAndBytesConfig(load_in_4bit=True), device_map="cuda")
print(m(torch.tensor([[1, 2, 3]], device="cuda")).logits.shape)'
capture load-4bit python3 -c "$load_4bit"
if [ "$tag" = bnb050 ]; then
  # A stale override pointing at a CUDA 12 library: its runtime (libcudart.so.12) is absent beside torch cu130.
  BNB_CUDA_VERSION=124 capture override-124-python-m-bitsandbytes python3 -m bitsandbytes
  BNB_CUDA_VERSION=124 capture override-124-quantize-4bit python3 -c "$four_bit"
  BNB_CUDA_VERSION=124 capture override-124-doctor python3 -m envbuilder doctor --python python3
  # The old advice "set BNB_CUDA_VERSION to an empty string": 0.50 refuses an empty value.
  BNB_CUDA_VERSION='' capture override-empty-quantize-4bit python3 -c "$four_bit"
  BNB_CUDA_VERSION='' capture override-empty-doctor python3 -m envbuilder doctor --python python3
fi
for f in "$res"/*.txt; do
  case "$f" in *doctor*|*smoke*|*detect*|*nvidia-smi*) continue;; esac
  python3 -m envbuilder doctor --log "$f" >"${f%.txt}.doctor-log.out" 2>&1
done
tar -C "$(dirname "$res")" -czf "$OUT/$tag.tar.gz" "$tag"
tail -n 40 "$res/smoke.txt"; for f in "$res"/*.txt; do echo "== $(basename "$f"): $(tail -n 1 "$f")"; done
