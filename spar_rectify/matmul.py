"""bfloat16 matrix products for training on CPUs that have bf16 units (Intel AMX / AVX512-BF16).

Defines `bf16_status`, `training_precision`.

With `TrainConfig.fast_matmul=True` the trainer runs every gradient step under torch's
`set_float32_matmul_precision("medium")`: parameters, optimiser state and every elementwise
operation stay float32, but the inputs of matrix products are rounded to bfloat16 and multiplied
on the bf16 units (products accumulate in float32), as TF32 does on GPUs. On a CPU with AMX that
made a lone 256x256 product 2.8x faster here, but whole gradient steps only 1.0-1.3x: products are
about half of a step (`benchmarks/train_throughput.py --matmul both`,
`results/train_throughput_matmul.json`, `results/train_throughput_intel_idle_s24.json`). On a CPU with
AVX512-BF16 but no AMX (AMD family 25) steps were slower than float32 (`results/train_throughput_zen4_s25.json`);
`bf16_status` says so there. SPAR scores its LSI candidates in float32 regardless.

Only gradient steps change: evaluation, rollouts, the exported policy and the deployed rectifier
(the compiled kernel) compute in float32. The setting is part of `TrainConfig`, so a checkpoint
records it and a run resumes bit-identically only under the same setting (resuming under another
is refused, naming the field). Where the CPU has no bf16 units the setting does nothing
(`bf16_status()` says why, `spar train` prints it) and training is float32 as before.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Iterator

import torch


def bf16_status() -> dict:
    """`{"available": bool, "reason": str}`: whether float32 matrix products can run on bf16 units here."""
    if not torch.backends.mkldnn.is_available():
        return {"available": False, "reason": "this torch build has no oneDNN (mkldnn): matrix products stay float32"}
    if not _onednn_bf16():
        return {
            "available": False,
            "reason": "this CPU has no bf16 units (needs AVX512-BF16 or AMX): fast_matmul does nothing, "
            "matrix products stay float32",
        }
    reason = "bf16 matrix products on this CPU's bf16 units (float32 accumulation)"
    flags = cpu_flags()
    if "avx512_bf16" in flags and "amx_bf16" not in flags:
        reason += (
            "; this CPU has AVX512-BF16 but no AMX, where whole gradient steps measured no faster than "
            "float32 (AMD family 25, per CPU-second: IQL 0.85x, SPAR 0.94x; "
            "benchmarks/results/train_throughput_zen4_s25.json): leave fast_matmul off here"
        )
    return {"available": True, "reason": reason}


def _onednn_bf16() -> bool:
    """Whether oneDNN reports bf16 support on this CPU."""
    check = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
    try:
        return bool(check()) if check is not None else False
    except RuntimeError:
        return False


def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags from /proc/cpuinfo (Linux); empty where that file is missing."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith("flags"):
            return frozenset(line.split(":", 1)[1].split())
    return frozenset()


@contextlib.contextmanager
def training_precision(fast: bool) -> Iterator[None]:
    """Within the block, float32 matrix products use bf16 inputs when `fast` (torch's "medium"
    precision), else full float32 ("highest"); the previous process-wide setting is restored after."""
    previous = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("medium" if fast else "highest")
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(previous)
