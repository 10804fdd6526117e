"""Run logs: a CSV file and TensorBoard event files, one row per logging interval.

Defines `RunLogger`.
"""

from __future__ import annotations

import csv
from pathlib import Path


class RunLogger:
    """Appends `{metric: value}` rows at a step to `<run>/metrics.csv` and TensorBoard.

    New metric names (SPAR's stages bring their own) widen the CSV header; older rows keep empty
    cells. Resuming appends to the same files.
    """

    def __init__(self, run_dir: str | Path, tensorboard: bool = True):
        self.path = Path(run_dir) / "metrics.csv"
        self.columns: list[str] = ["step"]
        if self.path.is_file():
            with self.path.open() as fh:
                header = next(csv.reader(fh), None)
            if header:
                self.columns = header
        self.writer = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(Path(run_dir) / "tb"))

    def log(self, step: int, metrics: dict[str, float]) -> None:
        new = [k for k in metrics if k not in self.columns]
        if new:
            rows = []
            if self.path.is_file():
                with self.path.open() as fh:
                    rows = list(csv.DictReader(fh))
            self.columns += new
            with self.path.open("w", newline="") as fh:
                w = csv.DictWriter(fh, self.columns)
                w.writeheader()
                w.writerows(rows)
        with self.path.open("a", newline="") as fh:
            csv.DictWriter(fh, self.columns).writerow({"step": step, **metrics})
        if self.writer is not None:
            for key, value in metrics.items():
                self.writer.add_scalar(key, value, step)

    def rows(self) -> list[dict]:
        """Every logged row (strings as in the CSV)."""
        if not self.path.is_file():
            return []
        with self.path.open() as fh:
            return list(csv.DictReader(fh))

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
