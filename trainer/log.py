"""The `selfsup` logger: every progress line selfsup writes (the Trainers, the components, the CLI) goes
through a child of it, `log.get(__name__)`, at INFO; warnings at WARNING.

Where it is shown is the caller's choice: `selfsup` (pipeline/cli.py) shows this logger at INFO (WARNING with
-q, and every library's INFO with -v). Where nothing configured logging (a Kubeflow container, a notebook,
a test) the lines still reach stderr: the logger's own handler writes them while the root logger has no
handler, and steps aside as soon as it has one, so that no line is printed twice.

Like trainer/contract.py this module imports no selfsup module and no TensorFlow.
"""

import logging
import sys

NAME = "selfsup"
FORMAT = "%(asctime)s %(message)s"
DATE_FORMAT = "%H:%M:%S"


class _UntilConfigured(logging.StreamHandler):
    """Writes to stderr only while the root logger has no handler of its own."""

    def emit(self, record: logging.LogRecord) -> None:
        if not logging.getLogger().handlers:
            super().emit(record)


def _root() -> logging.Logger:
    logger = logging.getLogger(NAME)
    if not any(isinstance(handler, _UntilConfigured) for handler in logger.handlers):
        handler = _UntilConfigured(sys.stderr)
        handler.setFormatter(logging.Formatter(FORMAT, datefmt=DATE_FORMAT))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
    return logger


def get(module_name: str) -> logging.Logger:
    """The logger of a selfsup module: `get(__name__)` gives 'selfsup.trainer.run' (a child of `selfsup`)."""
    _root()
    return logging.getLogger(f"{NAME}.{module_name}")


def set_level(level: int) -> None:
    """The level of every selfsup line (logging.INFO by default; WARNING for `selfsup -q`)."""
    _root().setLevel(level)
