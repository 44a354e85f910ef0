"""One run, one output folder: a lock that a second `selfsup run` into the same --output fails on at once.

The lock is an advisory `flock` on OUTPUT/.selfsup.lock, released by the kernel when the process
ends (a killed run never leaves a stale lock); the file names the holder's PID and start time so
that the second run's error can say who holds it.
"""

import contextlib
import datetime
import fcntl
import json
import os
from typing import Iterator

LOCK_FILE = ".selfsup.lock"


class OutputInUseError(ValueError):
    """Another selfsup run is writing to the same output folder."""


@contextlib.contextmanager
def output_lock(output_dir: str) -> Iterator[None]:
    """Holds the output folder's lock for the duration of the block.

    Raises:
      OutputInUseError: another process holds it; the message names its PID and start time.
    """
    os.makedirs(output_dir, exist_ok=True)
    path = os.path.join(output_dir, LOCK_FILE)
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(descriptor)
            raise OutputInUseError(
                f"another selfsup run (PID {holder.get('pid', '?')}, started {holder.get('started', '?')}) is writing "
                f"to {output_dir}; wait for it to finish or choose another --output"
            ) from None
        os.ftruncate(descriptor, 0)
        os.write(descriptor, json.dumps({
            "pid": os.getpid(),
            "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        }).encode("utf-8"))
        yield
    finally:
        os.close(descriptor)  # closing releases the flock


def _read_holder(descriptor: int) -> dict:
    try:
        os.lseek(descriptor, 0, os.SEEK_SET)
        return json.loads(os.read(descriptor, 4096).decode("utf-8") or "{}")
    except (OSError, ValueError):
        return {}
