"""Pickle-free folders of tensors: `<name>.safetensors` plus a `<name>.json` sidecar.

Defines `write_bundle`, `read_bundle`, `FORMAT_VERSION`.

Files are written to a temporary name and moved into place with `os.replace`, weights first and
JSON last, so an interrupted save leaves the previous bundle readable. The JSON records the
SHA-256 of the weights file (`weights_sha256`) and, from format version 2, of its own content
(`meta_sha256`: canonical JSON of every other field), so that every byte that affects behaviour
is covered; a mismatch on read is reported as corruption. Version 1 files (no `meta_sha256`)
still load; their values are validated by the reader (e.g. `checkpoint.load_rectifier`).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

#: Version of the on-disk format written by this package; newer versions are refused on read.
FORMAT_VERSION = 2


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def meta_digest(meta: dict) -> str:
    """SHA-256 of the canonical JSON of `meta` without its own `meta_sha256` field."""
    body = {k: v for k, v in meta.items() if k != "meta_sha256"}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), default=_json_default)
    return hashlib.sha256(text.encode()).hexdigest()


def _atomic_write(path: Path, write) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_bundle(folder: str | Path, name: str, meta: dict, tensors: dict[str, torch.Tensor]) -> Path:
    """Write `tensors` and `meta` (JSON-serialisable) into `folder` atomically.

    Returns:
        The folder path.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    weights = folder / f"{name}.safetensors"
    tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    _atomic_write(weights, lambda tmp: save_file(tensors, tmp))
    meta = {"format": f"spar_rectify.{name}", "format_version": FORMAT_VERSION, **meta,
            "weights_sha256": _sha256(weights)}
    meta = json.loads(json.dumps(meta, default=_json_default))  # the digest covers what is read back
    meta["meta_sha256"] = meta_digest(meta)
    text = json.dumps(meta, indent=2)
    _atomic_write(folder / f"{name}.json", lambda tmp: Path(tmp).write_text(text))
    return folder


def _json_default(value):
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (np.floating, np.integer, np.bool_)):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot store {type(value).__name__} in checkpoint JSON")


def read_bundle(folder: str | Path, name: str) -> tuple[dict, dict[str, torch.Tensor]]:
    """Read a bundle written by `write_bundle`, without pickle.

    Raises:
        FileNotFoundError: the folder or one of its two files is missing.
        ValueError: the JSON is unreadable, the format or its version is not one this package
            reads, or the weights do not match their recorded checksum (corrupted).
    """
    folder = Path(folder)
    meta_path, weights = folder / f"{name}.json", folder / f"{name}.safetensors"
    for path in (folder, meta_path, weights):
        if not path.exists():
            raise FileNotFoundError(
                f"{name} checkpoint incomplete: {path} does not exist; point to a folder written "
                f"by spar_rectify (it holds {name}.json and {name}.safetensors)."
            )
    try:
        meta = json.loads(meta_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{meta_path} is corrupted: not valid JSON ({err}); re-save the checkpoint") from err
    if not isinstance(meta, dict) or meta.get("format") != f"spar_rectify.{name}":
        raise ValueError(f"{meta_path} is not a spar_rectify {name} file (format={meta.get('format') if isinstance(meta, dict) else None!r})")
    version = meta.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION or version < 1:
        raise ValueError(
            f"{meta_path} has format_version {version!r}, this spar_rectify reads versions 1.."
            f"{FORMAT_VERSION}; upgrade spar_rectify (pip install -U spar_rectify)."
        )
    if version >= 2 or "meta_sha256" in meta:
        recorded, digest = meta.get("meta_sha256"), meta_digest(meta)
        if recorded != digest:
            raise ValueError(
                f"{meta_path} is corrupted or was edited: the SHA-256 of its content {digest[:12]}... does not "
                f"match the {str(recorded)[:12]}... it records; re-save or re-train (the file is not loaded)."
            )
    actual = _sha256(weights)
    if actual != meta.get("weights_sha256"):
        raise ValueError(
            f"{weights} is corrupted: its SHA-256 {actual[:12]}... does not match the "
            f"{str(meta.get('weights_sha256'))[:12]}... recorded in {meta_path.name}; re-save or re-train."
        )
    try:
        tensors = load_file(str(weights))
    except (SafetensorError, OSError) as err:
        raise ValueError(f"{weights} is corrupted: {err}") from err
    return meta, tensors
