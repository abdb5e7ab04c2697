"""Export the monitor's history: TensorBoard event files (the ``tensorboard`` extra) and JSON lines."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from initlab._errors import fail
from initlab.monitor.history import History

__all__ = ["TensorBoardWriter"]


class TensorBoardWriter:
    """Write a :class:`History` (or a live Monitor's) as TensorBoard scalars, tagged ``initlab/<stat>/<layer>``
    so that one statistic of every layer sits in one TensorBoard section (layers by module path, ``features.3``).
    Non-finite values and statistics that do not apply to a layer (``dead`` after tanh) are not written.

    >>> import tempfile
    >>> h = History(); h.add(1, {("fc", "mean"): 0.5})
    >>> with TensorBoardWriter(tempfile.mkdtemp()) as tb:
    ...     tb.write(h)
    1
    """

    def __init__(self, log_dir: str | Path) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as error:  # pragma: no cover - depends on the environment
            raise fail("TensorBoard export needs the tensorboard package", fix="pip install 'initlab[tensorboard]'") \
                from error  # fmt: skip
        self.log_dir = Path(log_dir)
        self._writer: Any = SummaryWriter(log_dir=str(self.log_dir))
        self._written = 0

    def write(self, history: History) -> int:
        """Write every record not written yet; returns how many steps were written."""
        new = list(zip(history.steps, history.records, strict=True))[self._written :]
        for step, record in new:
            for (layer, stat), value in record.items():
                if math.isfinite(value) and history.applies(layer, stat):
                    self._writer.add_scalar(f"initlab/{stat}/{layer}", value, global_step=step)
        self._written += len(new)
        self._writer.flush()
        return len(new)

    def close(self) -> None:
        self._writer.close()

    def __enter__(self) -> TensorBoardWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
