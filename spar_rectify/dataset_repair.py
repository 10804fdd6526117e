"""Detect and repair a Minari dataset whose metadata lags behind its HDF5 episodes.

Defines `backup_metadata`, `inspect_dataset`, `repair_dataset`.

Minari appends episodes to `main_data.hdf5` first and rewrites `metadata.json` afterwards, in
place and not atomically. A kill in between leaves counts that disagree with the HDF5 file (the
next append fails with a bare `AssertionError`) or a truncated JSON (the dataset no longer loads).
The episodes themselves are in the HDF5 file, so the counts can be rebuilt from it; the other
metadata (spaces, env spec, references) come from `metadata.json.bak`, which `spar collect` writes
before every append. `repair_dataset` does both, atomically; `load_minari` and `collect(...,
append=True)` call it when `inspect_dataset` finds a problem.
"""

from __future__ import annotations

import json
import os
import shutil
import warnings
from pathlib import Path


def _data_path(dataset_id: str) -> Path:
    from minari.storage import get_dataset_path

    return Path(get_dataset_path(dataset_id)) / "data"


def backup_metadata(dataset_id: str) -> None:
    """Copy `metadata.json` to `metadata.json.bak` (atomically) before the dataset is changed."""
    path = _data_path(dataset_id) / "metadata.json"
    tmp = path.with_name("metadata.json.bak.tmp")
    shutil.copyfile(path, tmp)
    os.replace(tmp, path.with_name("metadata.json.bak"))


def _hdf5_counts(path: Path) -> tuple[int, int, list[str]]:
    """(complete episodes, their steps, names of incomplete episode groups) of `main_data.hdf5`."""
    import h5py

    episodes, steps, broken = 0, 0, []
    with h5py.File(path, "r") as file:
        for name in file.keys():
            group = file[name]
            n = group.attrs.get("total_steps")
            ok = n is not None and "rewards" in group and len(group["rewards"]) == int(n)
            if ok:
                episodes, steps = episodes + 1, steps + int(n)
            else:
                broken.append(name)
    return episodes, steps, broken


def inspect_dataset(dataset_id: str) -> str | None:
    """Why the dataset's metadata and its HDF5 episodes disagree, or None when they agree (or when
    there is no such dataset: loading reports that)."""
    data = _data_path(dataset_id)
    meta_path, h5 = data / "metadata.json", data / "main_data.hdf5"
    if not meta_path.is_file() or not h5.is_file():
        return None
    try:
        meta = json.loads(meta_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        return f"its metadata.json is unreadable ({err})"
    episodes, steps, broken = _hdf5_counts(h5)
    if broken:
        return f"episode groups {broken} in main_data.hdf5 are incomplete"
    if (meta.get("total_episodes"), meta.get("total_steps")) != (episodes, steps):
        return (
            f"its metadata counts {meta.get('total_episodes')} episodes / {meta.get('total_steps')} steps, "
            f"main_data.hdf5 holds {episodes} / {steps}"
        )
    return None


def repair_dataset(dataset_id: str) -> dict:
    """Make `metadata.json` agree with the complete episodes in `main_data.hdf5`.

    Incomplete episode groups (a write cut off mid-episode) are removed; an unreadable
    `metadata.json` is rebuilt from `metadata.json.bak`. Returns what was done.

    Raises:
        ValueError: the metadata is unreadable and there is no readable backup.
    """
    import h5py

    data = _data_path(dataset_id)
    meta_path, h5, backup = data / "metadata.json", data / "main_data.hdf5", data / "metadata.json.bak"
    restored = False
    try:
        meta = json.loads(meta_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError, FileNotFoundError) as err:
        try:
            meta = json.loads(backup.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError, FileNotFoundError):
            raise ValueError(
                f"Minari dataset {dataset_id!r}: metadata.json at {meta_path} is unreadable ({err}) and there is no "
                f"readable backup ({backup.name}); its episodes are intact in {h5}: re-create the dataset from them "
                "or collect it again"
            ) from err
        restored = True
    episodes, steps, broken = _hdf5_counts(h5)
    if broken:
        with h5py.File(h5, "a") as file:
            for name in broken:
                del file[name]
    meta.update(total_episodes=episodes, total_steps=steps, dataset_size=round(h5.stat().st_size / 1e6, 1))
    tmp = meta_path.with_name("metadata.json.tmp")
    tmp.write_text(json.dumps(meta))
    os.replace(tmp, meta_path)
    return {"episodes": episodes, "steps": steps, "removed_incomplete": broken, "restored_from_backup": restored}


def ensure_consistent(dataset_id: str) -> None:
    """Repair the dataset if `inspect_dataset` finds a problem, with a warning that says what was done."""
    problem = inspect_dataset(dataset_id)
    if problem is None:
        return
    done = repair_dataset(dataset_id)
    warnings.warn(
        f"Minari dataset {dataset_id!r} was left inconsistent by an interrupted write: {problem}; repaired "
        f"from its HDF5 episodes: {done}",
        stacklevel=2,
    )
