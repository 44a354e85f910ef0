"""The installed versions of selfsup and the libraries it runs on: one lookup for `selfsup --version`, the
report's footer and the benchmarks' machine records. Imports no selfsup module and no TensorFlow."""

import importlib.metadata
import platform
from typing import Dict, Optional

# The distributions a run's results depend on, as importlib.metadata names them.
PACKAGES = ("selfsup", "tfx", "tensorflow", "keras", "tensorflow-model-analysis")
# TensorFlow is installed under one of several distribution names.
TENSORFLOW_DISTRIBUTIONS = ("tensorflow", "tensorflow-cpu", "tensorflow-macos")


def installed_version(*distributions: str) -> Optional[str]:
    """The installed version of the first of `distributions` that is installed; None when none is."""
    for distribution in distributions:
        try:
            return importlib.metadata.version(distribution)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


def package_versions() -> Dict[str, Optional[str]]:
    """{distribution: installed version or None} for PACKAGES (TensorFlow under any of its names)."""
    return {name: installed_version(*(TENSORFLOW_DISTRIBUTIONS if name == "tensorflow" else (name,)))
            for name in PACKAGES}


def python_version() -> str:
    return platform.python_version()
