#!/usr/bin/env bash
# GPU run 1 on the H200 device host (2026-12-01), from the repository root:
#   bash tests/gpu/h200_run1.sh .carry/run1
# .carry/run1 holds: bnb048/bitsandbytes-0.48.2-*.whl (from PyPI), libenvb_ext.so and envb_ext.cpp (a tiny torch
# operator library compiled on the development machine against torch 2.13.0+cpu with
#   g++ -O1 -shared -fPIC -std=c++17 -D_GLIBCXX_USE_CXX11_ABI=1 envb_ext.cpp -I$T/include \
#       -I$T/include/torch/csrc/api/include -L$T/lib -lc10 -ltorch_cpu -ltorch -o libenvb_ext.so
# where T is that torch's package directory).
# What it records, into one tarball under $OUT:
#   host/      the host's own facts for detection: nvidia-smi, /proc and /sys driver files, the PCI listing, NVML
#   bnb048/    bitsandbytes 0.48.2 beside torch 2.11.0+cu130: tests/gpu/device_validate.sh's whole record
#   failures/  failures reproduced for real: no GPU visible, a stray BNB_CUDA_VERSION, a torch extension built
#              against another torch
set -u
carry=${1:?usage: h200_run1.sh CARRY_DIR}
OUT=${OUT:-/tmp/envbuilder-out}
res=$(mktemp -d)/h200-run1
mkdir -p "$res/host" "$res/failures" "$OUT"
export HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
capture() {  # capture FILE CMD...: stdout+stderr and the exit code, as a user would paste them
  local file=$1; shift
  timeout 300 "$@" >"$res/$file" 2>&1
  echo "exit code: $?" >>"$res/$file"
}

# 1. Host facts (issue 16: detection from /sys, /proc, NVML and the PCI id before nvidia-smi).
capture host/nvidia-smi.txt nvidia-smi
capture host/nvidia-smi-q.xml nvidia-smi -q -x
capture host/nvidia-smi-query.csv nvidia-smi --query-gpu=index,name,pci.device_id,pci.sub_device_id,pci.bus_id,compute_cap,driver_version,memory.total --format=csv
capture host/proc-driver-nvidia-version.txt cat /proc/driver/nvidia/version
capture host/sys-module-nvidia-version.txt cat /sys/module/nvidia/version
for d in /proc/driver/nvidia/gpus/*; do echo "== $d"; cat "$d/information"; done >"$res/host/proc-driver-nvidia-gpus-information.txt" 2>&1
for d in /sys/bus/pci/devices/*; do
  drv=$(readlink "$d/driver" 2>/dev/null); drv=${drv##*/}
  echo "$(basename "$d") class=$(cat "$d/class") vendor=$(cat "$d/vendor") device=$(cat "$d/device")" \
       "subsystem_vendor=$(cat "$d/subsystem_vendor") subsystem_device=$(cat "$d/subsystem_device") driver=${drv:-none}"
done >"$res/host/sys-bus-pci-devices.txt" 2>&1
if command -v lspci >/dev/null; then capture host/lspci-nn.txt lspci -nn; fi
capture host/nvml.txt python3 -c '
import pynvml as n
n.nvmlInit()
print("driver", n.nvmlSystemGetDriverVersion())
print("cuda_driver_version", n.nvmlSystemGetCudaDriverVersion())
for i in range(n.nvmlDeviceGetCount()):
    h = n.nvmlDeviceGetHandleByIndex(i)
    pci = n.nvmlDeviceGetPciInfo(h)
    print(i, n.nvmlDeviceGetName(h), n.nvmlDeviceGetCudaComputeCapability(h), hex(pci.pciDeviceId), pci.busId,
          n.nvmlDeviceGetMemoryInfo(h).total // 2**20, "MiB")'
capture host/uname.txt uname -a
capture host/os-release.txt cat /etc/os-release
capture host/ldd-version.txt ldd --version
capture host/ls-dev-nvidia.txt ls -l /dev/ /dev/dri
capture host/pip-freeze.txt python3 -m pip list --format=freeze
capture host/detect.json python3 -m envbuilder detect --json

# 2. bitsandbytes 0.48.2 (ships a cuda130 library; exact-or-error loader rule).
bash tests/gpu/device_validate.sh "$carry/bnb048" >"$res/bnb048-validate.txt" 2>&1
site=/tmp/site-bnb048
export PYTHONPATH="$site:$PWD"

# 3. Failures reproduced for real.
four_bit='import torch, bitsandbytes.functional as F
x = torch.randn(4096, device="cuda", dtype=torch.float16)
q, s = F.quantize_4bit(x, quant_type="nf4")
print("max abs error", (F.dequantize_4bit(q, s) - x).abs().max().item())'
CUDA_VISIBLE_DEVICES='' capture failures/no-gpu-visible-torch-cuda.txt python3 -c 'import torch; print(torch.cuda.is_available()); torch.zeros(1).cuda()'
CUDA_VISIBLE_DEVICES='' capture failures/no-gpu-visible-python-m-bitsandbytes.txt python3 -m bitsandbytes
CUDA_VISIBLE_DEVICES='' capture failures/no-gpu-visible-quantize-4bit.txt python3 -c "$four_bit"
CUDA_VISIBLE_DEVICES='' capture failures/no-gpu-visible-smoke.txt python3 -m envbuilder smoke --python python3
BNB_CUDA_VERSION=126 capture failures/bnb0.48.2-BNB_CUDA_VERSION-126-python-m-bitsandbytes.txt python3 -m bitsandbytes
BNB_CUDA_VERSION=126 capture failures/bnb0.48.2-BNB_CUDA_VERSION-126-quantize-4bit.txt python3 -c "$four_bit"
capture failures/torch-ext-built-2.13-loaded-2.11.txt python3 -c "
import torch
print('torch', torch.__version__)
torch.ops.load_library('$carry/libenvb_ext.so')
x = torch.ones(2, 2)
print(torch.ops.envb_abi.scale_add(x, x, 1.0))"
capture failures/torch-ext-built-2.13-loaded-2.11-ldd.txt ldd "$carry/libenvb_ext.so"

tar -C "$(dirname "$res")" -czf "$OUT/h200-run1.tar.gz" h200-run1
cp /tmp/envbuilder-out/bnb048.tar.gz "$OUT/" 2>/dev/null || true
for f in "$res"/*/*; do echo "== ${f#"$res"/}: $(tail -n 1 "$f")"; done
tail -n 30 "$res/bnb048-validate.txt"
