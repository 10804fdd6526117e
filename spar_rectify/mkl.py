"""Make torch's bundled MKL take its fast matrix-multiply path on AMD CPUs.

Defines `enable`, `status`, `cpu_model`, `ENV_VAR`.

The MKL inside torch's CPU wheels checks the CPU vendor and, on AMD, takes a slower generic code
path for matrix multiplies. The known workaround overrides MKL's check with a one-line shared
library (`int mkl_serv_intel_cpu_true(void) { return 1; }`) loaded before torch. `enable()` does
that: it compiles the line with the system C compiler once (cached under
`~/.cache/spar_rectify/`) and loads it with `RTLD_GLOBAL`. It is called when `spar_rectify` is
imported, so it takes effect when `spar_rectify` is imported *before* torch (the `spar` command
always is). Results stay deterministic run to run, but are not bit-identical to the default path:
training checkpoints record the setting, and resuming under another setting warns.

Switch: `SPAR_MKL_INTEL_PATH=0` turns it off; `=1` (or unset) turns it on where it applies. It
does nothing, and `status()` says why, on Intel CPUs, outside Linux, without a C compiler, or
when torch was imported first. The library works the same without it, only slower on AMD.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

#: Environment variable: "0" off; "1" or unset: on where it applies.
ENV_VAR = "SPAR_MKL_INTEL_PATH"
_SOURCE = "int mkl_serv_intel_cpu_true(void) { return 1; }\n"
_STATE: dict = {"active": False, "reason": "not tried yet (spar_rectify.mkl.enable() runs on import)", "library": None}


def status() -> dict:
    """`{"active": bool, "reason": str, "library": path or None}`: whether the fast path is on and why."""
    return dict(_STATE)


def _cpuinfo() -> dict | None:
    """The first processor's fields from /proc/cpuinfo (key -> value), or None where it cannot be read."""
    info: dict = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            info.setdefault(key.strip(), value.strip())
    except OSError:
        return None
    return info


def cpu_model() -> str:
    """The CPU's model name, vendor, family and model number from /proc/cpuinfo ("unknown" elsewhere): what
    decides MKL's path here, and with it the float rounding that chaotic tasks amplify (benchmark records keep it)."""
    info = _cpuinfo()
    if info is None:
        return "unknown"
    name, vendor = info.get("model name", "unknown"), info.get("vendor_id", "?")
    return f"{name} ({vendor}, family {info.get('cpu family', '?')} model {info.get('model', '?')})"


def _cpu_vendor() -> str | None:
    return (_cpuinfo() or {}).get("vendor_id")


def _cache_dir() -> Path:
    root = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(root) / "spar_rectify"


def _build() -> Path:
    """Compile the override once; returns the cached library. Raises OSError / CalledProcessError."""
    digest = hashlib.sha256(_SOURCE.encode()).hexdigest()[:12]
    lib = _cache_dir() / f"mkl_intel_path_{digest}.so"
    if lib.is_file():
        return lib
    compiler = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        raise FileNotFoundError("no C compiler (cc or gcc) on PATH")
    lib.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=lib.parent) as tmp:
        src, out = Path(tmp) / "shim.c", Path(tmp) / "shim.so"
        src.write_text(_SOURCE)
        subprocess.run(
            [compiler, "-O2", "-shared", "-fPIC", "-o", str(out), str(src)], check=True, capture_output=True, timeout=60
        )
        os.replace(out, lib)  # atomic: a concurrent build yields the same file
    return lib


def enable() -> dict:
    """Turn the fast path on if it applies (idempotent). Returns `status()`; never raises."""
    if _STATE["active"]:
        return status()
    setting = os.environ.get(ENV_VAR, "1").strip()
    reason = None
    if setting == "0":
        reason = f"off ({ENV_VAR}=0)"
    elif setting != "1":
        reason = f"off: {ENV_VAR}={setting!r} is not 0 or 1"
    elif platform.system() != "Linux":
        reason = f"not applicable on {platform.system()} (Linux only)"
    elif _cpu_vendor() != "AuthenticAMD":
        reason = f"not needed on this CPU ({_cpu_vendor() or 'unknown vendor'}): MKL already takes its fast path"
    elif "torch" in sys.modules:
        reason = (
            "inactive: torch was imported before spar_rectify; import spar_rectify first (the spar "
            "command does) to get MKL's fast path on AMD CPUs"
        )
    if reason is None:
        try:
            lib = _build()
            ctypes.CDLL(str(lib), mode=ctypes.RTLD_GLOBAL)
            _STATE.update(active=True, reason="on: MKL takes its Intel code path (AMD CPU)", library=str(lib))
            return status()
        except (OSError, subprocess.SubprocessError) as err:
            reason = (
                f"inactive: could not build or load the override ({err}); training works without it, "
                f"slower on AMD CPUs; set {ENV_VAR}=0 to skip the attempt"
            )
    _STATE.update(active=False, reason=reason, library=None)
    return status()
