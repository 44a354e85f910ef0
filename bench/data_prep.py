"""Benchmark data: the cifar10-ssl folder in /tmp, sampled folders, and their TFRecords written by our ingest.

Run as a module to ingest a folder in a separate process (the throughput parent stays TensorFlow-free):

    python -m bench.data_prep ingest --folder DIR --examples OUT_EXAMPLES --report OUT_REPORT
"""

import argparse
import json
import os
import pathlib
import shutil
import subprocess
import sys
import tarfile
from typing import Optional

from trainer.contract import INGEST_REPORT_FILE, SPLIT_FOLDER_PREFIX, UNLABELED_SPLIT

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
DEFAULT_ARCHIVE = pathlib.Path(
    os.environ.get("SELFSUP_CIFAR_ARCHIVE", REPO_ROOT.parent / "shared" / "datasets" / "cifar10-ssl.tar.gz")
)
DEFAULT_CACHE = pathlib.Path("/tmp/selfsup_bench")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif")


def cifar_folder(cache_dir: pathlib.Path = DEFAULT_CACHE, archive: pathlib.Path = DEFAULT_ARCHIVE) -> pathlib.Path:
    """The unpacked cifar10-ssl folder under `cache_dir`, extracted from `archive` the first time."""
    folder = cache_dir / "cifar10-ssl"
    if (folder / "unlabeled").is_dir() and (folder / ".complete").exists():
        return folder
    if not archive.exists():
        raise FileNotFoundError(f"cifar10-ssl archive not found at {archive} (set SELFSUP_CIFAR_ARCHIVE)")
    cache_dir.mkdir(parents=True, exist_ok=True)
    if folder.exists():
        shutil.rmtree(folder)
    with tarfile.open(archive, mode="r:gz") as handle:
        handle.extractall(cache_dir)
    (folder / ".complete").write_text("extracted\n")
    return folder


def _image_files(folder: pathlib.Path):
    return sorted(path for path in folder.rglob("*") if path.suffix.lower() in IMAGE_SUFFIXES)


def link_file(path: pathlib.Path, target: pathlib.Path) -> None:
    """`target` as a hard link to `path` (a copy across file systems): selfsup's folder scan refuses symbolic
    links that lead out of the data folder, and a hard link is a file of the folder itself."""
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(path, target)
    except OSError:
        shutil.copyfile(path, target)


def sampled_folder(source: pathlib.Path, destination: pathlib.Path, unlabeled: int, labeled_per_class: int = 5,
                   test_per_class: int = 2, max_classes: int = 2, spread: bool = False) -> pathlib.Path:
    """A selfsup folder layout of hard links (`link_file`): `unlabeled` unlabeled images of `source` and a few labeled.

    The unlabeled images are the first ones in file-name order, or with `spread` evenly spaced over that
    order (cifar10-ssl's names start with the class: then every class is among them). Only the unlabeled
    split matters to the throughput benchmark; the labeled and test splits (the first `labeled_per_class`
    and `test_per_class` images of the first `max_classes` classes) exist because the layout requires them.
    """
    if destination.exists():
        shutil.rmtree(destination)
    unlabeled_files = _image_files(source / "unlabeled")
    if len(unlabeled_files) < unlabeled:
        raise ValueError(f"{source}/unlabeled has {len(unlabeled_files)} images, fewer than {unlabeled}")
    chosen = ([unlabeled_files[index * len(unlabeled_files) // unlabeled] for index in range(unlabeled)] if spread
              else unlabeled_files[:unlabeled])
    for index, path in enumerate(chosen):
        link_file(path, destination / "unlabeled" / f"{index:06d}{path.suffix}")
    for split, count in (("labeled", labeled_per_class), ("test", test_per_class)):
        classes = sorted(path.name for path in (source / split).iterdir() if path.is_dir())[:max_classes]
        for name in classes:
            for path in _image_files(source / split / name)[:count]:
                link_file(path, destination / split / name / path.name)
    return destination


def cached_unlabeled_tfrecords(source: pathlib.Path, cache_dir: pathlib.Path, images: int,
                               python: Optional[str] = None) -> str:
    """File pattern of the unlabeled split of `images` images of `source`, ingested once and cached."""
    root = cache_dir / f"tfrecords_{images}"
    examples = root / "examples"
    report_path = examples / INGEST_REPORT_FILE
    if report_path.exists():
        with open(report_path) as handle:
            if json.load(handle)["splits"][UNLABELED_SPLIT]["written"] == images:
                return str(examples / f"{SPLIT_FOLDER_PREFIX}{UNLABELED_SPLIT}" / "*")
    if root.exists():
        shutil.rmtree(root)
    folder = sampled_folder(source, root / "folder", images)
    command = [python or sys.executable, "-m", "bench.data_prep", "ingest", "--folder", str(folder),
               "--examples", str(examples), "--report", str(root / "report")]
    completed = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True)
    if completed.returncode != 0:
        raise RuntimeError(f"ingest failed ({' '.join(command)}):\n{completed.stderr[-3000:]}")
    return str(examples / f"{SPLIT_FOLDER_PREFIX}{UNLABELED_SPLIT}" / "*")


def _ingest(folder: str, examples: str, report: str) -> None:
    import apache_beam as beam

    from components.image_example_gen.ingest import ingest

    data = dict(source="folder", path=folder, class_names=None, tfds_name=None, tfds_data_dir=None,
                tfds_splits=None, eval_fraction=0.2, max_bad_fraction=0.05, max_image_pixels=40_000_000)
    result = ingest(data, examples, report, lambda: beam.Pipeline(argv=["--runner=DirectRunner"]))
    print(json.dumps(result["splits"]))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.data_prep")
    commands = parser.add_subparsers(dest="command", required=True)
    ingest = commands.add_parser("ingest", help="write the TFRecords of a folder with selfsup's ingest")
    ingest.add_argument("--folder", required=True)
    ingest.add_argument("--examples", required=True)
    ingest.add_argument("--report", required=True)
    args = parser.parse_args(argv)
    _ingest(args.folder, args.examples, args.report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
