"""fast_matmul: bf16 matrix products in gradient steps only, recorded and resumed like any setting."""

from __future__ import annotations

import pytest
import torch

import envs
from spar_rectify import CallablePolicy, matmul
from spar_rectify.config import TrainConfig
from spar_rectify.matmul import bf16_status, training_precision
from spar_rectify.trainer import Trainer
from tests.helpers import FAST, trainer_params
from tests.helpers_data import point_data

HAS_BF16 = bf16_status()["available"]


@pytest.fixture(scope="module")
def data():
    return point_data(episodes=60)


@pytest.fixture
def anchor(point_env):
    return CallablePolicy(envs.biased_controller, point_env.action_space, name="biased_controller")


def test_training_precision_is_scoped_to_the_block():
    before = torch.get_float32_matmul_precision()
    with training_precision(True):
        assert torch.get_float32_matmul_precision() == "medium"
    assert torch.get_float32_matmul_precision() == before
    with pytest.raises(RuntimeError, match="boom"):
        with training_precision(True):
            raise RuntimeError("boom")
    assert torch.get_float32_matmul_precision() == before


def test_status_says_why():
    status = bf16_status()
    assert set(status) == {"available", "reason"} and status["reason"]


@pytest.mark.parametrize("algo", ["iql", "spar"])
def test_fast_matmul_resumes_bit_identically_and_leaves_evaluation_in_float32(tmp_path, data, anchor, algo):
    cfg = TrainConfig(
        algo=algo, steps=40, manifold_fraction=0.2, fit_fraction=0.2, lsi_every=1, fast_matmul=True, **FAST
    )
    base = anchor if algo == "spar" else None
    full = Trainer(cfg, data, base)
    for _ in full.fit():
        # between steps (where evaluation and rollouts run) the process is back at full float32
        assert torch.get_float32_matmul_precision() == "highest"
    first = Trainer(cfg, data, base)
    list(first.fit(until=15))
    first.save_state(tmp_path / "ckpt")
    second = Trainer(cfg, data, base)
    second.load_state(tmp_path / "ckpt")
    list(second.fit())
    a, b = trainer_params(full), trainer_params(second)
    assert all(torch.equal(a[k], b[k]) for k in a)
    # Resuming under the other setting is refused, naming the field.
    with pytest.raises(ValueError, match="fast_matmul: True in the checkpoint, False now"):
        Trainer(cfg.replace(fast_matmul=False), data, base).load_state(tmp_path / "ckpt")


@pytest.mark.skipif(not HAS_BF16, reason="this CPU has no bf16 units: fast_matmul is float32 here")
def test_fast_matmul_changes_the_arithmetic_where_the_cpu_has_bf16_units(data):
    runs = []
    for fast in (False, True):
        t = Trainer(TrainConfig(algo="iql", steps=20, fast_matmul=fast, **FAST), data)
        list(t.fit())
        runs.append(trainer_params(t))
    assert any(not torch.equal(runs[0][k], runs[1][k]) for k in runs[0])
    # ... by rounding, not by breaking training: the parameters stay close.
    diff = max((runs[0][k] - runs[1][k]).abs().max().item() for k in runs[0])
    assert diff < 0.05


def test_spar_scores_its_candidates_in_full_float32_under_fast_matmul(data, anchor):
    cfg = TrainConfig(algo="spar", steps=12, manifold_fraction=0.25, fit_fraction=0.25, lsi_every=1, fast_matmul=True)
    trainer = Trainer(cfg.replace(**FAST), data, anchor)
    seen = []
    score = trainer.algo.critic.q_min

    def spy(*args, **kwargs):
        seen.append(torch.get_float32_matmul_precision())
        return score(*args, **kwargs)

    trainer.algo.critic.q_min = spy
    list(trainer.fit())
    assert seen and set(seen) == {"highest"}  # LSI's candidate scores: full float32


@pytest.mark.parametrize(
    "flags, warned",
    [({"avx512f", "avx512_bf16"}, True), ({"avx512_bf16", "amx_bf16", "amx_tile"}, False), (set(), False)],
)
def test_status_warns_where_bf16_units_come_without_amx(monkeypatch, flags, warned):
    monkeypatch.setattr(matmul, "_onednn_bf16", lambda: True)
    monkeypatch.setattr(matmul, "cpu_flags", lambda: frozenset(flags))
    status = bf16_status()
    assert status["available"]
    assert ("no AMX" in status["reason"] and "leave fast_matmul off" in status["reason"]) == warned


def test_status_says_unavailable_without_onednn_bf16(monkeypatch):
    monkeypatch.setattr(matmul, "_onednn_bf16", lambda: False)
    status = bf16_status()
    assert not status["available"] and "fast_matmul does nothing" in status["reason"]
