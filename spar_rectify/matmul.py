"""bfloat16 matrix products for training on CPUs that have bf16 units (Intel AMX / AVX512-BF16).

Defines `bf16_status`, `training_precision`.

With `TrainConfig.fast_matmul=True` the trainer runs every gradient step under torch's
`set_float32_matmul_precision("medium")`: parameters, optimiser state and every elementwise
operation stay float32, but the inputs of matrix products are rounded to bfloat16 and multiplied
on the bf16 units (products accumulate in float32), as TF32 does on GPUs. On a CPU with AMX that
made a lone 256x256 product 2.8x faster here, but whole gradient steps only 1.0-1.2x: products are
about half of a step (`benchmarks/train_throughput.py --matmul both`,
`results/train_throughput_matmul.json`). SPAR scores its LSI candidates in float32 regardless.

Only gradient steps change: evaluation, rollouts, the exported policy and the deployed rectifier
(the compiled kernel) compute in float32. The setting is part of `TrainConfig`, so a checkpoint
records it and a run resumes bit-identically only under the same setting (resuming under another
is refused, naming the field). Where the CPU has no bf16 units the setting does nothing
(`bf16_status()` says why, `spar train` prints it) and training is float32 as before.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch


def bf16_status() -> dict:
    """`{"available": bool, "reason": str}`: whether float32 matrix products can run on bf16 units here."""
    if not torch.backends.mkldnn.is_available():
        return {"available": False, "reason": "this torch build has no oneDNN (mkldnn): matrix products stay float32"}
    check = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
    try:
        supported = bool(check()) if check is not None else False
    except RuntimeError:
        supported = False
    if not supported:
        return {
            "available": False,
            "reason": "this CPU has no bf16 units (needs AVX512-BF16 or AMX): fast_matmul does nothing, "
            "matrix products stay float32",
        }
    return {"available": True, "reason": "bf16 matrix products on this CPU's bf16 units (float32 accumulation)"}


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
