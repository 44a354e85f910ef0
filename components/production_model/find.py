"""Which model is in production: the latest version the Pusher wrote to the serving folder.

TFX's Pusher copies a blessed model to SERVING_DIR/<version>/, where the version is the push time in
seconds, and writes saved_model.pb last. The model in production is therefore the complete version
(saved_model.pb present) with the largest number. Works on local folders and object storage (gs://,
s3://) alike, through tf.io.gfile.
"""

import os
from typing import Optional

import tensorflow as tf

SAVED_MODEL_FILE = "saved_model.pb"


def latest_pushed_model(serving_dir: str) -> Optional[str]:
    """The folder of the newest complete pushed version under `serving_dir`, or None.

    Folders whose name is not a number (not written by the Pusher) and versions without
    saved_model.pb (a push still copying, or one that failed) are ignored. A missing
    `serving_dir` means nothing was pushed yet.
    """
    if not tf.io.gfile.isdir(serving_dir):
        return None
    versions = sorted(
        (int(name.rstrip("/")) for name in tf.io.gfile.listdir(serving_dir) if name.rstrip("/").isdigit()),
        reverse=True,
    )
    for version in versions:
        folder = os.path.join(serving_dir, str(version))
        if tf.io.gfile.exists(os.path.join(folder, SAVED_MODEL_FILE)):
            return folder
    return None
