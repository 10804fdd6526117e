"""MKL's fast path on AMD CPUs: on where it applies, a no-op with a reason elsewhere, numerics sound."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from spar_rectify import mkl

PROBE = """
import json, sys
{first}
import torch
from spar_rectify import mkl
torch.manual_seed(0)
a, b = torch.randn(256, 300), torch.randn(300, 128)
err = ((a @ b).double() - a.double() @ b.double()).abs().max().item()
print(json.dumps({{**mkl.status(), "err": err}}))
"""


def _probe(first: str, **env) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", PROBE.format(first=first)],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, **env},
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


amd = mkl._cpu_vendor() == "AuthenticAMD"


@pytest.mark.skipif(not amd, reason="the override applies to AMD CPUs only")
def test_on_by_default_on_amd_and_products_stay_accurate():
    on = _probe("import spar_rectify")
    assert on["active"] and on["library"] and on["reason"].startswith("on:")
    off = _probe("import spar_rectify", SPAR_MKL_INTEL_PATH="0")
    assert not off["active"] and "SPAR_MKL_INTEL_PATH=0" in off["reason"]
    assert on["err"] < 1e-3 and off["err"] < 1e-3  # float32 products, either path, against float64


def test_torch_first_is_a_no_op_that_says_so():
    status = _probe("")  # torch imported before spar_rectify
    assert not status["active"]
    assert ("torch was imported before spar_rectify" in status["reason"]) or not amd


def test_bad_setting_is_named(monkeypatch):
    monkeypatch.setenv(mkl.ENV_VAR, "yes")
    monkeypatch.setattr(mkl, "_STATE", {"active": False, "reason": "", "library": None})
    status = mkl.enable()
    assert not status["active"] and "SPAR_MKL_INTEL_PATH='yes' is not 0 or 1" in status["reason"]


def test_checkpoints_record_the_setting_and_resume_warns_on_another(tmp_path, monkeypatch):
    from spar_rectify.config import TrainConfig
    from spar_rectify.trainer import Trainer
    from tests.helpers_data import point_data

    data = point_data(episodes=5)
    trainer = Trainer(TrainConfig(algo="bc", steps=4), data)
    list(trainer.fit())
    trainer.save_state(tmp_path / "ck")
    meta = json.loads((tmp_path / "ck" / "train_state.json").read_text())
    assert meta["mkl_intel_path"] == mkl.status()["active"]
    flipped = {"active": not meta["mkl_intel_path"], "reason": "flipped for the test", "library": None}
    monkeypatch.setattr(mkl, "_STATE", flipped)
    with pytest.warns(UserWarning, match="not be bit-identical.*SPAR_MKL_INTEL_PATH="):
        Trainer(TrainConfig(algo="bc", steps=4), data).load_state(tmp_path / "ck")


def test_the_cpu_model_names_vendor_family_and_model_and_says_unknown_without_cpuinfo(tmp_path, monkeypatch):
    info = tmp_path / "cpuinfo"
    info.write_text(
        "processor\t: 0\nvendor_id\t: AuthenticAMD\ncpu family\t: 25\nmodel\t\t: 17\nmodel name\t: AMD EPYC 9454\n"
        "processor\t: 1\nvendor_id\t: AuthenticAMD\ncpu family\t: 25\nmodel\t\t: 17\nmodel name\t: AMD EPYC 9454\n"
    )
    monkeypatch.setattr(mkl, "Path", lambda _: info)
    assert mkl.cpu_model() == "AMD EPYC 9454 (AuthenticAMD, family 25 model 17)"
    monkeypatch.setattr(mkl, "Path", lambda _: tmp_path / "missing")
    assert mkl.cpu_model() == "unknown"
