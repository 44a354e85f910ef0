"""Reads the folder layout of an image dataset and plans the splits, before any Beam work.

    DIR/unlabeled/**            any image files, nested or flat, no labels
    DIR/labeled/<class>/**      labeled images, one sub-folder per class
    DIR/test/<class>/**         optional held-out labeled images; when absent, a
                                deterministic hash of each labeled file's path sends
                                a share `eval_fraction` of them to the eval split

Every problem with the layout raises ValueError naming the folder or file, so a
bad data folder fails the run before the pipeline starts.
"""

import dataclasses
import hashlib
import os
import posixpath
import unicodedata
from typing import Dict, List, Tuple

import tensorflow as tf

from components.image_example_gen.folder_scan import FolderScanner
from components.image_example_gen.image_check import has_image_extension
from trainer.contract import EVAL_SPLIT, TRAIN_SPLIT, UNLABELED_LABEL, UNLABELED_SPLIT

# The folders of a data folder (pipeline/demo_data.py writes them too).
UNLABELED_FOLDER, LABELED_FOLDER, TEST_FOLDER = "unlabeled", "labeled", "test"
# The order ImageExampleGen writes the splits in: the Examples artifact's split_names, the report's splits.
SPLIT_ORDER = (UNLABELED_SPLIT, TRAIN_SPLIT, EVAL_SPLIT)


@dataclasses.dataclass
class FolderPlan:
    """Which file goes to which split with which label.

    Attributes:
      class_names: sorted class folder names; a label is an index into this list.
      records: (relative path, split, label) for every image file, label -1 when unlabeled.
      ignored: relative paths of files without an image extension (reported, not read).
      links_not_followed: symbolic links skipped, with the reason (see folder_scan.py).
    """

    class_names: List[str]
    records: List[Tuple[str, str, int]]
    ignored: List[str]
    links_not_followed: List[Dict[str, str]] = dataclasses.field(default_factory=list)

    def counts(self) -> Dict[str, int]:
        counts = {split: 0 for split in SPLIT_ORDER}
        for _, split, _ in self.records:
            counts[split] += 1
        return counts


def _class_folders(scanner: FolderScanner, folder: str) -> Dict[str, List[str]]:
    """{class name (NFC): relative image-or-other file paths} for root/folder/<class>/**.

    Class names are compared in Unicode NFC, so a folder copied from macOS (NFD names) matches.
    """
    root = scanner.root
    base = os.path.join(root, folder)
    classes: Dict[str, List[str]] = {}
    raw_names: Dict[str, str] = {}
    for entry in sorted(tf.io.gfile.listdir(base)):
        raw = entry.rstrip("/")
        if raw.startswith("."):
            continue
        if not tf.io.gfile.isdir(os.path.join(base, raw)):
            raise ValueError(
                f"{posixpath.join(folder, raw)} in {root}: files in '{folder}/' must sit in a class "
                f"sub-folder ({folder}/<class>/...)"
            )
        name = unicodedata.normalize("NFC", raw)
        if name in raw_names:
            raise ValueError(
                f"{base} has two class folders with the same name in different Unicode forms: "
                f"{raw_names[name]!r} and {raw!r}; merge them"
            )
        raw_names[name] = raw
        classes[name] = scanner.list_files(posixpath.join(folder, raw))
    return classes


def is_eval_by_hash(relative_path: str, eval_fraction: float) -> bool:
    """A deterministic split decision from the file's relative path (same on every machine)."""
    return int.from_bytes(_path_digest(relative_path)[:8], "big") / 2**64 < eval_fraction


def _path_digest(relative_path: str) -> bytes:
    return hashlib.sha256(relative_path.encode("utf-8")).digest()


def plan_folder(root: str, eval_fraction: float, follow_external_links: bool = False) -> FolderPlan:
    """Scans `root` and decides every file's split and label.

    Args:
      root: the data folder (local path or a tf.io.gfile URL such as gs://...).
      eval_fraction: share of labeled images sent to eval when there is no test/ folder.
      follow_external_links: read symbolic links that resolve outside `root`.

    Returns:
      A FolderPlan.

    Raises:
      ValueError: naming the folder or file when the layout cannot be used.
    """
    if not tf.io.gfile.isdir(root):
        raise ValueError(f"data folder does not exist or is not a folder: {root}")
    labeled_dir = os.path.join(root, LABELED_FOLDER)
    if not tf.io.gfile.isdir(labeled_dir):
        raise ValueError(f"no labeled/ folder in {root}: expected {root}/labeled/<class>/<images>")
    scanner = FolderScanner(root, follow_external_links)
    labeled = _class_folders(scanner, LABELED_FOLDER)
    if not labeled:
        raise ValueError(f"{labeled_dir} is empty: expected one sub-folder per class")
    if len(labeled) < 2:
        raise ValueError(
            f"{labeled_dir} has a single class ({next(iter(labeled))}): a classifier needs at least two classes"
        )
    class_names = sorted(labeled)
    records: List[Tuple[str, str, int]] = []
    ignored: List[str] = []

    def add(paths: List[str], split_of, label: int) -> int:
        added = 0
        for path in paths:
            if has_image_extension(path):
                records.append((path, split_of(path), label))
                added += 1
            else:
                ignored.append(path)
        return added

    has_test = tf.io.gfile.isdir(os.path.join(root, TEST_FOLDER))
    for label, name in enumerate(class_names):
        if has_test:
            split_of = lambda path: TRAIN_SPLIT  # noqa: E731
        else:
            split_of = lambda path: EVAL_SPLIT if is_eval_by_hash(path, eval_fraction) else TRAIN_SPLIT  # noqa: E731
        if add(labeled[name], split_of, label) == 0:
            raise ValueError(f"class folder {os.path.join(labeled_dir, name)} has no image files")

    if has_test:
        test = _class_folders(scanner, TEST_FOLDER)
        unknown = sorted(set(test) - set(class_names))
        if unknown:
            raise ValueError(
                f"{os.path.join(root, TEST_FOLDER)} has classes that are not in labeled/: {unknown} "
                f"(labeled classes: {class_names})"
            )
        for name, paths in test.items():
            add(paths, lambda path: EVAL_SPLIT, class_names.index(name))

    unlabeled_dir = os.path.join(root, UNLABELED_FOLDER)
    if not tf.io.gfile.isdir(unlabeled_dir):
        raise ValueError(f"no unlabeled/ folder in {root}: self-supervised pretraining needs unlabeled images")
    if add(scanner.list_files(UNLABELED_FOLDER), lambda path: UNLABELED_SPLIT, UNLABELED_LABEL) == 0:
        raise ValueError(f"{unlabeled_dir} has no image files: self-supervised pretraining needs unlabeled images")

    plan = FolderPlan(class_names=class_names, records=records, ignored=ignored,
                      links_not_followed=scanner.links_not_followed)
    counts = plan.counts()
    for split in (TRAIN_SPLIT, EVAL_SPLIT):
        if counts[split] == 0:
            raise ValueError(f"the {split} split of {root} would be empty (image counts: {counts})")
    return plan
