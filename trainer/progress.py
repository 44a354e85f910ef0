"""Progress on the console: a bar with an ETA when stderr is a terminal, plain lines otherwise.

`shows_bar` is the one decision, made for every long step: each training phase (`fit_progress`),
ingestion and `selfsup embed` (`Progress`). Off a terminal (a log file, CI, a pipe) a training phase
logs a line per epoch (`epoch_line`) and a counted step a line at every tenth of the way, both through
the selfsup logger (trainer/log.py) at INFO.

This module imports no selfsup module but trainer/log.py, so that components/ (ingestion) may use it as
well as the Trainers: it is the one place where the choice between a bar and lines is made.
"""

import sys
import time
from typing import List, Optional, TextIO, Tuple

import keras
from tqdm import tqdm

from trainer import log

LOG = log.get(__name__)
# Keras's fit() verbosity with selfsup's progress: Keras prints nothing itself.
SILENT = 0


def shows_bar(stream: Optional[TextIO] = None) -> bool:
    """True when progress written to `stream` (default: sys.stderr at the time of the call) should be a bar,
    i.e. when that stream is a terminal."""
    stream = sys.stderr if stream is None else stream
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


class Progress:
    """Counts `total` items of work (images, ...): a tqdm bar with an ETA on `stream` when it is a terminal,
    otherwise a log line each time another tenth is done ("`description`: 450/1797 images"). `total` None: a
    bar without an ETA, and no lines."""

    def __init__(self, total: Optional[int], description: str, unit: str, stream: Optional[TextIO] = None):
        self.stream = sys.stderr if stream is None else stream
        self.total, self.description, self.unit = total, description, unit
        self.done, self._tenths = 0, 0
        self.bar = (tqdm(total=total, desc=description, unit=unit, file=self.stream, mininterval=0.5,
                         dynamic_ncols=True) if shows_bar(self.stream) else None)

    def update(self, count: int = 1) -> None:
        self.done += count
        if self.bar is not None:
            self.bar.update(count)
            return
        if self.total:
            tenths = min(self.done, self.total) * 10 // self.total
            if tenths > self._tenths:
                self._tenths = tenths
                LOG.info(f"{self.description}: {self.done}/{self.total} {self.unit}s")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def epoch_line(phase: str, epoch: int, epochs: int, seconds: float, logs: dict) -> str:
    """'pretrain epoch 3/20 - 12.3 s - knn_accuracy: 0.4500 - loss: 4.1234' (`epoch` counts from 0; metrics sorted)."""
    metrics = "".join(f" - {name}: {float(value):.4f}" for name, value in sorted((logs or {}).items())
                      if hasattr(value, "__float__"))
    return f"{phase} epoch {epoch + 1}/{epochs} - {seconds:.1f} s{metrics}"


class EpochBar(keras.callbacks.Callback):
    """One tqdm bar over a whole fit() (every step of every epoch, so its ETA is the phase's), and each
    epoch's metrics as a line above it. Put it after the callbacks that add to the epoch's logs.

    When the dataset's length is unknown (TFRecord files), the first epoch counts steps without a total;
    from the second on the bar knows its total. A resumed fit() (initial_epoch > 0) starts the bar there.
    """

    def __init__(self, phase: str, stream: Optional[TextIO] = None):
        super().__init__()
        self.phase = phase
        self.stream = sys.stderr if stream is None else stream
        self.bar = None
        self._first_epoch = 0
        self._epoch_started = 0.0
        self._steps_this_epoch = 0

    def _epochs(self) -> int:
        return self.params.get("epochs") or 1

    def on_epoch_begin(self, epoch, logs=None):
        if self.bar is None:
            steps = self.params.get("steps")
            self._first_epoch = epoch
            self.bar = tqdm(total=steps * self._epochs() if steps else None, initial=epoch * (steps or 0),
                            desc=self.phase, unit="step", file=self.stream, mininterval=0.5, dynamic_ncols=True)
        self.bar.set_postfix_str(f"epoch {epoch + 1}/{self._epochs()}", refresh=False)
        self._epoch_started, self._steps_this_epoch = time.monotonic(), 0

    def on_train_batch_end(self, batch, logs=None):
        self._steps_this_epoch += 1
        self.bar.update(1)

    def on_epoch_end(self, epoch, logs=None):
        if self.bar.total is None and self._steps_this_epoch:  # now the length of an epoch is known
            resumed = self._first_epoch * self._steps_this_epoch
            self.bar.total = self._steps_this_epoch * self._epochs()
            self.bar.n += resumed
            self.bar.initial += resumed
            self.bar.refresh()
        self.bar.write(epoch_line(self.phase, epoch, self._epochs(), time.monotonic() - self._epoch_started, logs),
                       file=self.stream)

    def on_train_end(self, logs=None):
        if self.bar is not None:
            self.bar.close()
            self.bar = None


class EpochLines(keras.callbacks.Callback):
    """Each epoch's metrics as a log line (`epoch_line`), for fits off a terminal. Put it after the callbacks
    that add to the epoch's logs."""

    def __init__(self, phase: str):
        super().__init__()
        self.phase = phase
        self._epoch_started = 0.0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch_started = time.monotonic()

    def on_epoch_end(self, epoch, logs=None):
        LOG.info(epoch_line(self.phase, epoch, self.params.get("epochs") or 1,
                            time.monotonic() - self._epoch_started, logs))


def fit_progress(phase: str, stream: Optional[TextIO] = None) -> Tuple[List[keras.callbacks.Callback], int]:
    """What a Trainer's fit() shows for `phase` (its history prefix: "pretrain", "linear", "distill", ...):
    an EpochBar when `stream` (default sys.stderr) is a terminal, else EpochLines (a log line per epoch);
    Keras itself prints nothing (verbose=0).

    Returns:
      The callbacks to append after the others, and the `verbose` to pass to fit().
    """
    if shows_bar(stream):
        return [EpochBar(phase, stream)], SILENT
    return [EpochLines(phase)], SILENT
