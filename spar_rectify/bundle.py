"""Pickle-free folders of tensors: `<name>.safetensors` plus a `<name>.json` sidecar.

Defines `write_bundle`, `read_bundle`, `FORMAT_VERSION`.

A save stages a complete new pair (`<name>.safetensors.new`, `<name>.json.new`, each written to a
temporary name and renamed) and then moves it into place, weights first; reading falls back to the
staged pair when the main one is incomplete or inconsistent, so a save killed at any point leaves
a complete bundle (the previous or the new one) readable. The JSON records the
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
import warnings
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
    weights, meta_path = folder / f"{name}.safetensors", folder / f"{name}.json"
    staged_weights, staged_meta = folder / f"{name}.safetensors.new", folder / f"{name}.json.new"
    tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    # 1. A complete new pair is staged beside the current one (each file written atomically) ...
    _atomic_write(staged_weights, lambda tmp: save_file(tensors, tmp))
    meta = {
        "format": f"spar_rectify.{name}",
        "format_version": FORMAT_VERSION,
        **meta,
        "weights_sha256": _sha256(staged_weights),
    }
    meta = json.loads(json.dumps(meta, default=_json_default))  # the digest covers what is read back
    meta["meta_sha256"] = meta_digest(meta)
    text = json.dumps(meta, indent=2)
    _atomic_write(staged_meta, lambda tmp: Path(tmp).write_text(text))
    # 2. ... then moved into place. A kill between the two moves leaves the new weights beside the
    # staged JSON, which `read_bundle` pairs up: some complete bundle always survives.
    os.replace(staged_weights, weights)
    os.replace(staged_meta, meta_path)
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
    try:
        return _read_pair(folder, name, meta_path, weights)
    except (FileNotFoundError, ValueError) as err:
        # An interrupted write: the newest complete pair is the staged JSON with the moved or the
        # staged weights (see `write_bundle`).
        staged_meta, staged_weights = folder / f"{name}.json.new", folder / f"{name}.safetensors.new"
        for pair in ((staged_meta, weights), (staged_meta, staged_weights)):
            if folder.is_dir() and all(p.exists() for p in pair):
                try:
                    result = _read_pair(folder, name, *pair)
                except (FileNotFoundError, ValueError):
                    continue
                warnings.warn(
                    f"{folder}: {err}; loaded the complete bundle an interrupted save left "
                    f"({pair[0].name}, {pair[1].name}) instead",
                    stacklevel=2,
                )
                return result
        raise


def _read_pair(folder: Path, name: str, meta_path: Path, weights: Path) -> tuple[dict, dict[str, torch.Tensor]]:
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
        found = meta.get("format") if isinstance(meta, dict) else None
        raise ValueError(f"{meta_path} is not a spar_rectify {name} file (format={found!r})")
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
