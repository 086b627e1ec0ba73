"""envbuilder image smoke test (generated; standard library + the image's own packages only).

--build: run by the Dockerfile (no GPU needed): every locked version installed and nothing else, imports,
         torch's CUDA build, bitsandbytes' native library file present.
--full:  the image's default command, for `docker run --gpus all`: envbuilder's own check (check.py beside
         this file) when the image carries it; else the build checks plus CUDA visible, every import, and a
         bitsandbytes 4-bit round trip on the GPU.
"""

import importlib
import importlib.metadata
import importlib.util
import json
import os
import re
import sys
from pathlib import Path

DATA = json.loads('{"bnb_library": null, "cuda": "12.8", "gpu_imports": ["llmcompressor"], "imports": ["torch", "compressed_tensors", "transformers", "accelerate"], "lock_digest": "sha256:773ff06835c42ac10d6ffc4ddbdd7c63694588b52fb2f78130e07e42892e7ac1", "name": "awq-sm89", "packages": {"accelerate": "1.15.0", "annotated-doc": "0.0.7", "annotated-types": "0.8.0", "anyio": "4.16.0", "auto-round": "0.15.1", "certifi": "2026.10.19.post1", "charset-normalizer": "3.5.2", "click": "8.5.1", "compressed-tensors": "0.19.0", "cuda-bindings": "12.9.4", "cuda-pathfinder": "1.9.0", "datasets": "5.2.0", "dill": "0.4.1", "filelock": "4.2.12", "fsspec": "2026.9.0", "h11": "0.16.0", "hf-xet": "1.8.0", "httpcore": "1.0.9", "httpx": "0.28.1", "huggingface-hub": "1.33.0", "idna": "3.20", "jinja2": "3.1.6", "llmcompressor": "0.14.0.1", "loguru": "0.7.3", "markdown-it-py": "4.3.0", "markupsafe": "3.0.4", "mdurl": "0.1.2", "mpmath": "1.3.0", "multiprocess": "0.70.19", "networkx": "3.6.1", "numpy": "2.4.6", "nvidia-cublas-cu12": "12.8.4.1", "nvidia-cuda-cupti-cu12": "12.8.90", "nvidia-cuda-nvrtc-cu12": "12.8.93", "nvidia-cuda-runtime-cu12": "12.8.90", "nvidia-cudnn-cu12": "9.10.2.21", "nvidia-cufft-cu12": "11.3.3.83", "nvidia-cufile-cu12": "1.13.1.3", "nvidia-curand-cu12": "10.3.9.90", "nvidia-cusolver-cu12": "11.7.3.90", "nvidia-cusparse-cu12": "12.5.8.93", "nvidia-cusparselt-cu12": "0.7.1", "nvidia-ml-py": "13.615.71", "nvidia-nccl-cu12": "2.27.5", "nvidia-nvjitlink-cu12": "12.8.93", "nvidia-nvshmem-cu12": "3.4.5", "nvidia-nvtx-cu12": "12.8.90", "packaging": "26.3", "pandas": "3.1.1", "pillow": "13.0.0", "psutil": "7.2.2", "py-cpuinfo": "9.0.0", "pyarrow": "26.0.1", "pydantic": "2.14.4", "pydantic-core": "2.50.5", "pygments": "2.21.0", "python-dateutil": "4.0.0", "pyyaml": "6.0.4", "regex": "2026.11.19", "requests": "2.34.2", "rich": "15.0.0", "safetensors": "0.8.0", "shellingham": "1.5.4", "sympy": "1.14.0", "tokenizers": "0.23.3", "torch": "2.10.0", "tqdm": "4.70.1", "transformers": "5.17.0", "triton": "3.6.0", "typer": "0.29.2", "typing-extensions": "4.16.0", "typing-inspection": "0.4.5", "tzdata": "2026.6", "urllib3": "2.8.0", "xxhash": "4.1.0"}, "profile": "awq"}')


def _norm(name):
    return re.sub(r"[-_.]+", "-", name).lower()


def check_versions():
    installed = {}
    for dist in importlib.metadata.distributions():
        installed[_norm(dist.metadata["Name"])] = dist.version
    wanted = {_norm(k): v for k, v in DATA["packages"].items()}
    wrong = sorted(f"{n} {installed.get(n)} (lock: {v})" for n, v in wanted.items() if installed.get(n) != v)
    extra = sorted(set(installed) - set(wanted))
    if wrong or extra:
        return False, "not the lock: " + "; ".join(wrong + [f"{n} is not in the lock" for n in extra])
    return True, f"{len(wanted)} packages, exactly the lock's versions"


def check_imports(names):
    for name in names:
        importlib.import_module(name)
    return True, "imported " + ", ".join(names)


def check_torch_build():
    import torch

    if torch.version.cuda != DATA["cuda"]:
        return False, f"torch {torch.__version__} is built for CUDA {torch.version.cuda}, the lock says {DATA['cuda']}"
    return True, f"torch {torch.__version__} (CUDA {torch.version.cuda})"


def check_bnb_library():
    lib = DATA["bnb_library"]
    if lib is None:
        return True, "no bitsandbytes in this profile"
    spec = importlib.util.find_spec("bitsandbytes")
    where = [Path(p) for p in (spec.submodule_search_locations or [])] if spec else []
    if not any((d / lib).is_file() for d in where):
        return False, f"bitsandbytes has no {lib} (the library it loads for this torch)"
    return True, f"bitsandbytes ships {lib}"


def check_gpu():
    import torch

    if DATA["cuda"] is None:
        return True, "CPU image: no GPU needed"
    if not torch.cuda.is_available():
        return False, "torch sees no GPU: run with --gpus all on a host with the NVIDIA container toolkit"
    major, minor = torch.cuda.get_device_capability(0)
    return True, f"{torch.cuda.get_device_name(0)} (sm_{major}{minor})"


def check_bnb_roundtrip():
    if DATA["bnb_library"] is None:
        return True, "no bitsandbytes in this profile"
    import bitsandbytes.functional as F
    import torch

    device = "cuda" if DATA["cuda"] else "cpu"
    x = torch.randn(64, 64, device=device, dtype=torch.float16 if device == "cuda" else torch.float32)
    q, state = F.quantize_4bit(x, quant_type="nf4")
    err = (F.dequantize_4bit(q, state) - x).abs().mean().item()
    if not err < 0.2:
        return False, f"nf4 round trip error {err:.3f} on {device}"
    return True, f"nf4 round trip on {device}, mean error {err:.3f}"


def run(stages):
    failed = 0
    for name, fn in stages:
        try:
            ok, detail = fn()
        except Exception as exc:  # a failing import or kernel is a failed stage, reported, not a traceback
            ok, detail = False, f"{type(exc).__name__}: {exc}"
        print(f"{'ok  ' if ok else 'FAIL'} {name}: {detail}", flush=True)
        failed += not ok
    return 1 if failed else 0


def main(argv):
    mode = argv[1] if len(argv) > 1 else "--full"
    build = [
        ("versions", check_versions),
        ("torch build", check_torch_build),
        ("bitsandbytes library", check_bnb_library),
        ("imports", lambda: check_imports(DATA["imports"])),
    ]
    if mode == "--build":
        return run(build)
    check = Path(__file__).with_name("check.py")
    if check.is_file():
        # envbuilder's staged check (one JSON document on stdout; exit 0 ok, 1 a stage failed).
        os.execv(sys.executable, [sys.executable, str(check), "--profile", DATA["profile"], *argv[2:]])
    full = [("gpu", check_gpu), ("gpu imports", lambda: check_imports(DATA["gpu_imports"]))]
    return run(build + full + [("bitsandbytes 4-bit", check_bnb_roundtrip)])


if __name__ == "__main__":
    sys.exit(main(sys.argv))
