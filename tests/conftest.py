"""Shared pytest setup: two logical CPU devices, and samples of the real-image dataset."""

import os
import pathlib
import tarfile

import pytest
import tensorflow as tf


def _split_cpu_into_two_logical_devices():
    """Exposes the first CPU as two logical devices so MirroredStrategy tests run on one machine.

    Must run before any other TensorFlow op initialises the runtime. Does nothing
    if logical devices are already configured; if the runtime is already
    initialised, the configuration is left as it is and multi-device tests skip.
    """
    cpu = tf.config.list_physical_devices("CPU")[0]
    if tf.config.get_logical_device_configuration(cpu) is not None:
        return
    try:
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    except RuntimeError:
        pass


_split_cpu_into_two_logical_devices()


# --- Real images: a small sample of ../shared/datasets/cifar10-ssl.tar.gz ----------------------

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
CIFAR_ARCHIVE = pathlib.Path(
    os.environ.get("SELFSUP_CIFAR_ARCHIVE", REPO_ROOT.parent / "shared" / "datasets" / "cifar10-ssl.tar.gz")
)
SAMPLE_CLASSES = ("airplane", "automobile", "frog")


def extract_cifar_sample(destination: pathlib.Path, unlabeled: int, labeled_per_class: int,
                         test_per_class: int, classes=SAMPLE_CLASSES) -> pathlib.Path:
    """Copies a deterministic sample of the archive into destination/{unlabeled,labeled,test}.

    Unlabeled images are taken from the listed classes too (by file name prefix: a choice of
    which images to sample, never a label the pipeline sees).
    """
    if not CIFAR_ARCHIVE.exists():
        pytest.skip(f"real-image dataset not found at {CIFAR_ARCHIVE} (set SELFSUP_CIFAR_ARCHIVE)")
    wanted = {"unlabeled": unlabeled, "labeled": labeled_per_class, "test": test_per_class}
    taken = {}
    with tarfile.open(CIFAR_ARCHIVE, mode="r|gz") as archive:
        for member in archive:
            parts = member.name.split("/")
            if not member.isfile() or len(parts) < 3 or parts[1] not in wanted:
                continue
            split = parts[1]
            group = parts[2].split("_")[0] if split == "unlabeled" else parts[2]
            if group not in classes or taken.get((split, group), 0) >= wanted[split] // (
                len(classes) if split == "unlabeled" else 1
            ):
                continue
            taken[(split, group)] = taken.get((split, group), 0) + 1
            target = destination.joinpath(*parts[1:])
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(archive.extractfile(member).read())
    return destination


@pytest.fixture(scope="session")
def cifar_sample(tmp_path_factory) -> pathlib.Path:
    """A few hundred real CIFAR-10 images in the selfsup folder layout (3 classes)."""
    return extract_cifar_sample(tmp_path_factory.mktemp("cifar-sample"), unlabeled=300, labeled_per_class=40,
                                test_per_class=30)


@pytest.fixture(scope="session")
def digits_examples_uri(tmp_path_factory) -> str:
    """scikit-learn's digits as an Examples artifact (the real ingest): 100 train, 100 eval and 1,597
    unlabeled images."""
    import dataclasses

    import apache_beam as beam

    from components.image_example_gen.ingest import ingest
    from pipeline.config import DataConfig
    from pipeline.demo_data import write_digits_dataset

    folder = tmp_path_factory.mktemp("digits")
    write_digits_dataset(str(folder), labeled_per_class=10, test_per_class=10)
    root = tmp_path_factory.mktemp("pipeline-root")
    uri = str(root / "ImageExampleGen" / "examples" / "1")
    settings = dataclasses.asdict(DataConfig(source="folder", path=str(folder), max_bad_fraction=0.0))
    ingest(settings, uri, str(root / "ImageExampleGen" / "report" / "1"),
           lambda: beam.Pipeline(argv=["--runner=DirectRunner"]))
    return uri
