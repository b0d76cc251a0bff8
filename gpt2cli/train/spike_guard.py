"""The loss-spike guard (``--skip-loss-z``, ``--skip-grad-z``; llm.c's ``-sl`` / ``-sg``).

A step whose loss or gradient norm lies more than the threshold's standard deviations above
the mean of the last ``--skip-window`` kept steps is an outlier: its update is skipped.
Skipped steps do not enter the window (a spike must not widen it), and ``--max-skips`` of them
in a row stop the run. The window is part of the training state (:meth:`state_dict`), held as
Python floats, so a resumed run makes the same decisions bit for bit.
"""

from __future__ import annotations

import math
from collections import deque
from typing import Any

from gpt2cli.errors import Gpt2Error


def z_score(window: deque[float], value: float) -> float:
    """How many (population) standard deviations ``value`` lies above the window's mean."""
    mean = math.fsum(window) / len(window)
    std = math.sqrt(math.fsum((x - mean) ** 2 for x in window) / len(window))
    if std == 0:
        return 0.0 if value <= mean else math.inf
    return (value - mean) / std


class SpikeGuard:
    def __init__(self, loss_z: float, grad_z: float, window: int, max_skips: int) -> None:
        self.loss_z, self.grad_z, self.max_skips = loss_z, grad_z, max_skips
        self.losses: deque[float] = deque(maxlen=window)
        self.norms: deque[float] = deque(maxlen=window)
        self.in_a_row = 0

    def check(self, loss: float, norm: float) -> str | None:
        """Why this step's update is skipped (None: it is not); the window moves on."""
        reasons = []
        if len(self.losses) == self.losses.maxlen:
            for name, limit, window, value in (
                ("loss", self.loss_z, self.losses, loss),
                ("gradient norm", self.grad_z, self.norms, norm),
            ):
                if limit > 0 and (z := z_score(window, value)) > limit:
                    reasons.append(f"{name} {value:.4g} is {z:.1f} standard deviations up")
        if reasons:
            self.in_a_row += 1
            return ", ".join(reasons)
        self.losses.append(loss)
        self.norms.append(norm)
        self.in_a_row = 0
        return None

    def stop_if_too_many(self, step: int, reason: str, last_saved: str | None) -> None:
        if self.in_a_row < self.max_skips:
            return
        kept = f"; last good checkpoint: {last_saved}" if last_saved else ""
        raise Gpt2Error(
            f"{self.in_a_row} updates in a row skipped as spikes, the last at step {step} "
            f"({reason}): stopped{kept}",
            "lower --lr, check the data, raise --skip-loss-z / --skip-grad-z / --max-skips, "
            "or --resume from the checkpoint",
        )

    def state_dict(self) -> dict[str, Any]:
        return {"losses": list(self.losses), "norms": list(self.norms), "in_a_row": self.in_a_row}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.losses.extend(float(x) for x in state["losses"])
        self.norms.extend(float(x) for x in state["norms"])
        self.in_a_row = int(state["in_a_row"])
