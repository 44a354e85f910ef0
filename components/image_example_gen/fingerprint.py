"""A fingerprint of everything a source reads, so that changed data re-runs ingestion.

TFX keys its cache on a component's configuration; for a data folder that is only its path. As
TFX's own file-based ExampleGen driver does, the fingerprint of the input (every file's path, size
and modification time, plus what else identifies the source, e.g. a TFDS dataset's version) is
computed when the component is about to run and added to its execution properties: an added,
removed or changed file changes the cache key, an untouched folder keeps it.
"""

import hashlib
import os
from typing import Any, Dict

import tensorflow as tf

from components.image_example_gen.sources import SourcePlan


def input_fingerprint(plan: SourcePlan, root: str = "") -> Dict[str, Any]:
    """{"fingerprint": "sha256:...", "files": count, "bytes": total size} of what `plan` reads.

    Args:
      plan: the planned source (sources.plan_source).
      root: paths are hashed relative to it (so the same data at another path hashes the same).
    """
    digest = hashlib.sha256(plan.identity.encode("utf-8") + b"\n")
    total = 0
    for path in sorted(plan.input_files):
        stat = tf.io.gfile.stat(path)
        total += stat.length
        relative = os.path.relpath(path, root) if root and "://" not in path else path
        digest.update(f"{relative}\0{stat.length}\0{stat.mtime_nsec}\n".encode("utf-8"))
    return {"fingerprint": "sha256:" + digest.hexdigest(), "files": len(plan.input_files), "bytes": total}
