#!/usr/bin/env bash
# GPU run 6 on the H200 device host (issue 17's rest), from the repository root. As run on 2026-12-02:
#   call 1:  RUN6_BUDGET_S=575 bash tests/gpu/h200_run6.sh --doctor .carry/run2 .carry/quant gptq
#   call 2:  RUN6_BUDGET_S=585 bash tests/gpu/h200_run6.sh .carry/quant awq:awq gptq:gptq  (a fresh machine:
#            call 1's had gone back, its extension cache with it)
#   call 3:  RUN6_BUDGET_S=330 bash tests/gpu/h200_run6.sh .carry/quant gptq awq  (call 2's machine, still warm)
# (The device copy's .git is not the tree that ran: the commits are in tests/fixtures/h200-cu130/README.md.)
# Outputs: $OUT/h200-run6-<profiles>.tar.gz (unpacked into tests/fixtures/h200-cu130/run6/).
#
#   --doctor BNB_CARRY   doctor --env on run 2's bitsandbytes 0.49.2 environment (BNB_CARRY: .carry/run2, as
#                        tests/gpu/h200_run2.sh reads it) with CUDA_VISIBLE_DEVICES='' and '7' (no GPU
#                        visible: run 5 missed it; rules_cuda.rule_cuda_torch_sees_no_gpu came after), and as is
#                        (the control). First, before any smoke, so the JIT times are the smoke's alone.
#   QUANT_DIR            the 18 wheels tests/gpu/h200_quant_load.sh names (installed with pip --target)
#   PROFILE[:FORMATS]... `envbuilder smoke --python python3 --profile P [--formats F] --json` for each, in turn,
#                        inside RUN6_BUDGET_S seconds for the whole script (default 560); stdout is the JSON
#                        document, stderr the smoke's progress lines as they come (what a timeout leaves)
#
# gptqmodel JIT-compiles its CUDA kernels (nvcc, ninja) at first use into GPTQMODEL_TORCH_EXTENSIONS_DIR. That
# cache is .cache/run6-ext in the repository (ignored, so it stays on the warm machine between calls): call 1
# pays the compile (run 3 measured ExllamaV2 35 s, Marlin 232 s, AWQ ExllamaV2 37 s), call 2 finds it built; a
# compile cut short by a timeout leaves its object files, which ninja reuses. Its listing before and after each
# smoke is ext-before-P.txt / ext-after-P.txt; each stage's evidence.jit names what was built and how long.
set -u
bnbcarry=
if [ "${1:-}" = "--doctor" ]; then
  bnbcarry=${2:?usage: h200_run6.sh [--doctor BNB_CARRY] QUANT_DIR PROFILE...}
  shift 2
fi
quant=${1:?usage: h200_run6.sh [--doctor BNB_CARRY] QUANT_DIR PROFILE...}
shift
[ $# -gt 0 ] || { echo "usage: h200_run6.sh [--doctor BNB_CARRY] QUANT_DIR PROFILE..." >&2; exit 2; }
budget=${RUN6_BUDGET_S:-560}
OUT=${OUT:-/tmp/envbuilder-out}
tag=$(echo "$@" | tr ' :,' '-__')
res=$(mktemp -d)/h200-run6-$tag
ext=$PWD/.cache/run6-ext
mkdir -p "$res" "$OUT" "$ext"
began=$SECONDS
export HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1 MAX_JOBS=${MAX_JOBS:-$(nproc)}
export GPTQMODEL_TORCH_EXTENSIONS_DIR=$ext TORCH_EXTENSIONS_DIR=$ext

capture() {  # capture FILE CMD...: stdout+stderr and the exit code
  local file=$1
  shift
  timeout 120 "$@" >"$res/$file" 2>&1
  echo "exit code: $?" >>"$res/$file"
}

site=/tmp/site-quant6
rm -rf "$site"
python3 -m pip install --no-index --no-deps --no-compile --no-cache-dir --target "$site" "$quant"/*.whl \
  >"$res/pip-install.txt" 2>&1 || { tail -n 20 "$res/pip-install.txt"; exit 3; }
capture nvidia-smi.txt nvidia-smi --query-gpu=index,name,pci.device_id,compute_cap,driver_version,memory.total --format=csv
capture nvcc.txt nvcc --version
capture pip-freeze.txt env PYTHONPATH="$site" python3 -m pip list --format=freeze
capture versions.txt env PYTHONPATH="$site" python3 -c "import os, platform, sys, torch, transformers, gptqmodel, optimum.version, compressed_tensors, llmcompressor; print(sys.version); print(platform.machine(), os.cpu_count(), 'cpus, MAX_JOBS', os.environ.get('MAX_JOBS')); print('torch', torch.__version__, torch.version.cuda, torch.cuda.get_device_name(0), torch.cuda.get_device_capability(0)); print('transformers', transformers.__version__, 'gptqmodel', gptqmodel.__version__, 'optimum', optimum.version.__version__, 'compressed-tensors', compressed_tensors.__version__, 'llmcompressor', llmcompressor.__version__)"

if [ -n "$bnbcarry" ]; then
  # Run 2's healthy environment: a real venv on the host's Python whose .pth names bitsandbytes 0.49.2's
  # files and the host torch's site-packages (tests/gpu/h200_run2.sh makes it the same way).
  mkdir -p "$res/novisible"
  bnbsite=/tmp/site-bnb049-run6
  envs=$(mktemp -d)
  rm -rf "$bnbsite" && mkdir -p "$bnbsite" && tar -C "$bnbsite" -xJf "$bnbcarry/bnb049-tree.tar.xz" || exit 3
  torch_site=$(python3 -c 'import os, torch; print(os.path.dirname(os.path.dirname(torch.__file__)))')
  python3 -m venv --without-pip "$envs/bnb049" || exit 3
  printf '%s\nimport site; site.addsitedir(%s)\n' "$bnbsite" "'$torch_site'" \
    >"$(echo "$envs/bnb049"/lib/python3*/site-packages)/envbuilder-run6.pth"
  doctor() {  # doctor NAME [VAR=VALUE...]: doctor --env in that state, JSON then text
    local name=$1
    shift
    env "$@" PYTHONPATH="$PWD" timeout 120 python3 -m envbuilder doctor --env "$envs/bnb049" --json \
      >"$res/novisible/$name.doctor.json" 2>"$res/novisible/$name.doctor.stderr.txt"
    echo "exit code: $?" >>"$res/novisible/$name.doctor.stderr.txt"
    env "$@" PYTHONPATH="$PWD" timeout 120 python3 -m envbuilder doctor --env "$envs/bnb049" \
      >"$res/novisible/$name.doctor.txt" 2>&1
    echo "exit code: $?" >>"$res/novisible/$name.doctor.txt"
  }
  t0=$SECONDS
  doctor healthy &
  doctor novisible CUDA_VISIBLE_DEVICES= &
  doctor novisible7 CUDA_VISIBLE_DEVICES=7 &
  CUDA_VISIBLE_DEVICES='' timeout 120 "$envs/bnb049/bin/python" -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, "devices", torch.cuda.device_count())' \
    >"$res/novisible/novisible-torch.txt" 2>&1 &
  wait
  echo "doctor states: $((SECONDS - t0)) s" >"$res/novisible/elapsed.txt"
fi

for spec in "$@"; do
  prof=${spec%%:*}
  only=()
  [ "$spec" = "$prof" ] || only=(--formats "${spec#*:}")
  p=$(echo "$spec" | tr ':,' '__')
  left=$((budget - (SECONDS - began) - 15))
  if [ "$left" -lt 60 ]; then
    echo "smoke $p not run: $left s left of $budget s" >"$res/smoke-$p.skipped.txt"
    continue
  fi
  ls -lR "$ext" >"$res/ext-before-$p.txt" 2>&1
  t0=$SECONDS
  PYTHONPATH="$site:$PWD" timeout "$left" python3 -m envbuilder smoke --python python3 --profile "$prof" "${only[@]}" --json \
    >"$res/smoke-$p.json" 2>"$res/smoke-$p.stderr.txt"
  echo "exit code: $? after $((SECONDS - t0)) s (limit $left s)" >>"$res/smoke-$p.stderr.txt"
  ls -lR "$ext" >"$res/ext-after-$p.txt" 2>&1
done
echo "whole run: $((SECONDS - began)) s (budget $budget s)" >"$res/elapsed.txt"
tar -C "$(dirname "$res")" -czf "$OUT/h200-run6-$tag.tar.gz" "h200-run6-$tag"

cat "$res/elapsed.txt" "$res/versions.txt"
for f in "$res"/novisible/*.doctor.json; do
  [ -e "$f" ] || continue
  python3 - "$f" <<'PY'
import json, sys
try:
    doc = json.load(open(sys.argv[1]))
except Exception as exc:
    sys.exit(f"{sys.argv[1]}: no JSON: {exc}")
print(sys.argv[1].rsplit("/", 1)[-1], [(f.get("severity"), f.get("rule")) for f in doc.get("findings", [])])
PY
done
for spec in "$@"; do
  p=$(echo "$spec" | tr ':,' '__')
  tail -n 12 "$res/smoke-$p.stderr.txt" 2>/dev/null
  python3 - "$res/smoke-$p.json" <<'PY'
import json, sys
try:
    doc = json.load(open(sys.argv[1]))
except Exception as exc:  # a timeout leaves no JSON
    sys.exit(f"no JSON: {exc}")
print("seconds", doc.get("seconds"), "jit", doc.get("jit"))
for s in doc.get("stages", []):
    ev = s.get("evidence", {})
    print(f"  {s.get('status'):4} {s.get('name')} {s.get('seconds')} s jit {s.get('jit_seconds', 0)}: "
          f"{str(s.get('detail'))[:150]} {ev.get('kernel', '')}")
PY
done
