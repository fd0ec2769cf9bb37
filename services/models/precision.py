"""Which number format a model computes in on this machine's CPU.

Training and serving both ask the same question: does this CPU multiply bf16 in hardware? Where
it does (Intel AMX, AVX512-BF16: Sapphire Rapids and newer, Zen 4), oneDNN runs bf16 matmuls
natively: a Gemma 3 270M LoRA step takes 1.35–1.5× less time and 32 requests decode 1.5× faster
(bench/bench_training.py, bench/bench_inference_dtype.py); where it does not, bf16 is emulated
and slower than fp32, so "auto" keeps fp32 there.
"""

from __future__ import annotations

import re
from pathlib import Path

#: /proc/cpuinfo flags of bf16 matrix instructions.
BF16_CPU_FLAGS = re.compile(r"\b(?:amx_bf16|avx512_bf16)\b")


def cpu_multiplies_bf16(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    """Whether this CPU has bf16 matrix instructions (False where /proc/cpuinfo cannot be read)."""
    try:
        return BF16_CPU_FLAGS.search(cpuinfo.read_text(encoding="utf-8", errors="replace")) is not None
    except OSError:
        return False


def serving_dtype(setting: str, device: str) -> str:
    """The torch dtype name a served model loads in: ``setting`` itself, or what "auto" means here.

    "auto" is bfloat16 on a CPU with bf16 instructions and on a CUDA GPU that supports it, and
    float32 elsewhere.
    """
    if setting != "auto":
        return setting
    if device.startswith("cuda"):
        import torch

        return "bfloat16" if torch.cuda.is_bf16_supported() else "float32"
    return "bfloat16" if cpu_multiplies_bf16() else "float32"
