"""Progress display for training and evaluation: a tqdm bar per pass (a widget in Jupyter), or one line.

tqdm is imported only when a bar is actually shown. ``enabled=True`` takes it
from ``tqdm.auto``, so that notebooks get a widget and terminals a text bar;
``enabled="text"`` always draws the text bar, which is what a notebook saved
with its outputs keeps (a saved widget shows only its first frame outside a
live kernel). Without tqdm installed a plain summary line is printed at the
end of each epoch; with ``enabled=False`` nothing at all is printed.
"""
from __future__ import annotations

__all__ = ["EpochProgress"]


def _load_tqdm(text_only: bool):
    try:  # optional dependency, loaded on first use
        if text_only:
            from tqdm.std import tqdm  # noqa: PLC0415
        else:
            from tqdm.auto import tqdm  # noqa: PLC0415
    except ImportError:
        return None
    return tqdm


class EpochProgress:
    """Shows the batches of one pass (an epoch, an evaluation): ``update(loss)`` after each batch,
    ``close(summary)`` at the end."""

    def __init__(self, enabled, total: int | None, description: str):
        if enabled not in (True, False, "text"):
            raise ValueError(f"progress must be True, False or 'text', got {enabled!r}")
        self.enabled = bool(enabled)
        self.description = description
        self._bar = None
        self._loss_sum = 0.0
        self._batches = 0
        if enabled:
            tqdm = _load_tqdm(text_only=enabled == "text")
            if tqdm is not None:
                self._bar = tqdm(total=total, desc=description, unit="batch", leave=True, dynamic_ncols=True)

    def update(self, loss: float | None = None) -> None:
        """One more batch done, with its loss if given (the bar shows the running mean of the losses).

        Evaluation passes no loss: reading it would copy a number to the host after every batch.
        """
        if self._bar is None:
            return
        if loss is not None:
            self._loss_sum += loss
            self._batches += 1
            self._bar.set_postfix_str(f"loss {self._loss_sum / self._batches:.4f}", refresh=False)
        self._bar.update(1)

    def close(self, summary: str = "") -> None:
        """End the epoch; ``summary`` replaces the running loss on the bar (or is printed)."""
        if self._bar is not None:
            self._bar.set_postfix_str(summary, refresh=False)
            self._bar.close()
            self._bar = None
        elif self.enabled:
            print(f"{self.description}: {summary}", flush=True)
        self.enabled = False
