"""TensorBoard scalars beside metrics.jsonl: `Board` writes each epoch's numeric metrics into
RUN/tensorboard/ with the epoch as global step. `aevb.rundir` opens it when the run's TrainConfig
asks (`tensorboard=True`); the training loop never sees it. The tensorboard package is optional
and imported here only.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from .errors import AevbError

FOLDER = "tensorboard"  # inside the run directory


class Board:
    """An open TensorBoard event writer for one run. `first_epoch` is the first epoch this session
    writes: events an earlier session wrote from it on (epochs trained again after a resume) are purged."""

    def __init__(self, run_dir: Path, first_epoch: int):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise AevbError("--tensorboard needs the tensorboard package: pip install aevb[tensorboard]") from None
        self.writer = SummaryWriter(str(run_dir / FOLDER), purge_step=first_epoch if first_epoch > 1 else None)

    def epoch(self, record: dict[str, Any]) -> None:
        """The record's finite numbers (bools and the epoch itself left out) as scalars at its epoch."""
        step = int(record["epoch"])
        for key, value in record.items():
            if key == "epoch" or isinstance(value, bool) or not isinstance(value, (int, float)):
                continue
            if math.isfinite(value):
                self.writer.add_scalar(key, value, global_step=step)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()
