"""Shared pytest setup: two logical CPU devices (and a MirroredStrategy over them), samples of real images
(CIFAR-10, else the digits), the digits as an Examples artifact, and a backup that stops the Trainer."""

import os
import pathlib
import tarfile

import numpy as np
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

# After the split: these import TensorFlow's Keras (which leaves the devices alone) and selfsup's trainer.
import keras  # noqa: E402

from trainer import checkpoints, keras_fixes  # noqa: E402


def two_cpu_mirrored_strategy(collective_key_base: int) -> tf.distribute.MirroredStrategy:
    """A MirroredStrategy over the two logical CPUs (skips the test without them), numbering its collective
    operations from `collective_key_base`.

    Every MirroredStrategy numbers its collective operations from the same keys: two of them in one process
    clash as soon as they run different collectives (this is why distribute.build_strategy creates one per
    process). Each test module's strategy gets a key range of its own, away from other modules' strategies.
    """
    devices = tf.config.list_logical_devices("CPU")
    if len(devices) < 2:
        pytest.skip("needs two logical CPU devices; TensorFlow was initialised before conftest.py ran")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(tf.distribute.MirroredStrategy, "_collective_key_base", collective_key_base)
        return tf.distribute.MirroredStrategy([device.name for device in devices[:2]])


def fit_one_step(model, strategy, batch, learning_rate, initial_weights=None) -> dict:
    """One SGD step of `model` (built under `strategy`) on `batch`, from `initial_weights` when given, with the
    Keras fixes a strategy of several replicas needs (trainer/keras_fixes.py); returns the step's history."""
    with strategy.scope():
        if initial_weights is not None:
            model.set_weights(initial_weights)
        model.compile(optimizer=keras.optimizers.SGD(learning_rate))
    with keras_fixes.strategy_fixes(strategy):
        return model.fit(tf.data.Dataset.from_tensors(batch), epochs=1, verbose=0).history


class BackupThenStop(checkpoints.EpochBackup):
    """The real backup (checkpoints.EpochBackup named `name`), then a KeyboardInterrupt after epoch `stop_after`,
    as a kill would end the Trainer."""

    def __init__(self, folder: str, name: str, stop_after: int):
        super().__init__(folder, folder, name)
        self.stop_after = stop_after

    def on_epoch_end(self, epoch, logs=None):
        super().on_epoch_end(epoch, logs)
        if epoch + 1 == self.stop_after:
            raise KeyboardInterrupt(f"stopped after epoch {epoch + 1}")


def log_text(caplog) -> str:
    """What the selfsup logger (trainer/log.py) wrote while `caplog` listened, one message a line."""
    return "\n".join(record.getMessage() for record in caplog.records if record.name.startswith("selfsup"))


# --- Real images: a sample of ../shared/datasets/cifar10-ssl.tar.gz, else of scikit-learn's digits ------------

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
CIFAR_ARCHIVE = pathlib.Path(
    os.environ.get("SELFSUP_CIFAR_ARCHIVE", REPO_ROOT.parent / "shared" / "datasets" / "cifar10-ssl.tar.gz")
)
USES_CIFAR = CIFAR_ARCHIVE.is_file()
# The three classes of the sample, which are its labeled/ and test/ folder names.
SAMPLE_CLASSES = ("airplane", "automobile", "frog") if USES_CIFAR else ("0", "1", "2")
SAMPLE_IMAGE_SIZE = 32  # CIFAR-10's; the digits are scaled up to it


def pytest_collection_modifyitems(session, config, items):
    """The end-to-end tests first (a stable sort): under `make test`'s workers (pytest-xdist, a file per worker),
    the longest files then start at once instead of last, beside a worker with nothing left to do."""
    items.sort(key=lambda item: item.get_closest_marker("e2e") is None)


def pytest_report_header(config):
    if USES_CIFAR:
        return f"real images: CIFAR-10 sample from {CIFAR_ARCHIVE}"
    return (f"real images: scikit-learn's digits, coloured, as 32x32 JPEGs (no CIFAR-10 archive at {CIFAR_ARCHIVE}; "
            "set SELFSUP_CIFAR_ARCHIVE)")


def real_image_sample(destination: pathlib.Path, unlabeled: int, labeled_per_class: int,
                      test_per_class: int) -> pathlib.Path:
    """Writes a deterministic sample of real images into destination/{unlabeled,labeled,test}: `unlabeled`
    images in unlabeled/, so many per class (SAMPLE_CLASSES) in labeled/<class>/ and test/<class>/, all
    SAMPLE_IMAGE_SIZE x SAMPLE_IMAGE_SIZE RGB JPEGs. From the CIFAR-10 archive when it is there, else from
    scikit-learn's digits (which ship with it), so that a clone without ../shared tests what CI tests."""
    sample = extract_cifar_sample if USES_CIFAR else write_digits_sample
    return sample(destination, unlabeled, labeled_per_class, test_per_class)


def extract_cifar_sample(destination: pathlib.Path, unlabeled: int, labeled_per_class: int,
                         test_per_class: int) -> pathlib.Path:
    """Copies a deterministic sample of the archive into destination/{unlabeled,labeled,test}.

    Unlabeled images are taken from the listed classes too (by file name prefix: a choice of
    which images to sample, never a label the pipeline sees).
    """
    wanted = {"unlabeled": unlabeled, "labeled": labeled_per_class, "test": test_per_class}
    taken = {}
    with tarfile.open(CIFAR_ARCHIVE, mode="r|gz") as archive:
        for member in archive:
            parts = member.name.split("/")
            if not member.isfile() or len(parts) < 3 or parts[1] not in wanted:
                continue
            split = parts[1]
            group = parts[2].split("_")[0] if split == "unlabeled" else parts[2]
            if group not in SAMPLE_CLASSES or taken.get((split, group), 0) >= wanted[split] // (
                len(SAMPLE_CLASSES) if split == "unlabeled" else 1
            ):
                continue
            taken[(split, group)] = taken.get((split, group), 0) + 1
            target = destination.joinpath(*parts[1:])
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(archive.extractfile(member).read())
    return destination


def write_digits_sample(destination: pathlib.Path, unlabeled: int, labeled_per_class: int,
                        test_per_class: int, seed: int = 0) -> pathlib.Path:
    """The same layout from scikit-learn's 8x8 digit scans of 0, 1 and 2 (about 180 of each), scaled up to
    32x32 and coloured, ink and paper each a colour of their own per image (seeded), so that colour
    augmentations and grayscale have something to change. Unlabeled images are taken from the same digits,
    `unlabeled // 3` of each, named without their class."""
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    rng = np.random.default_rng(seed)
    wanted = [("labeled", labeled_per_class), ("test", test_per_class), ("unlabeled", unlabeled // len(SAMPLE_CLASSES))]
    for name in SAMPLE_CLASSES:
        indices = rng.permutation(np.flatnonzero(digits.target == int(name)))
        if len(indices) < sum(count for _, count in wanted):
            raise ValueError(f"the digits have {len(indices)} images of {name}, fewer than the "
                             f"{sum(count for _, count in wanted)} asked for")
        start = 0
        for split, count in wanted:
            folder = destination / split / (name if split != "unlabeled" else "")
            folder.mkdir(parents=True, exist_ok=True)
            for index in indices[start:start + count]:
                ink = (digits.images[index] / 16.0)[:, :, None]  # (8, 8, 1) in [0, 1]
                paper, ink_colour = rng.uniform(0.55, 1.0, 3), rng.uniform(0.0, 0.45, 3)
                pixels = np.clip((1 - ink) * paper + ink * ink_colour, 0, 1) * 255
                image = Image.fromarray(pixels.astype(np.uint8), mode="RGB").resize(
                    (SAMPLE_IMAGE_SIZE, SAMPLE_IMAGE_SIZE), Image.BICUBIC)
                image.save(folder / (f"{index:04d}.jpg" if split != "unlabeled" else f"digit_{index:04d}.jpg"),
                           quality=95)
            start += count
    return destination


@pytest.fixture(scope="session")
def real_images(tmp_path_factory) -> pathlib.Path:
    """A few hundred real images in the selfsup folder layout, 3 classes (SAMPLE_CLASSES): 300 unlabeled,
    40 labeled and 30 test images per class (real_image_sample)."""
    return real_image_sample(tmp_path_factory.mktemp("real-images"), unlabeled=300, labeled_per_class=40,
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


@pytest.fixture(scope="session")
def digits_training_examples(digits_examples_uri):
    """What the Trainers read of the digits' Examples artifact (trainer/examples.py), with the default settings."""
    from trainer import data
    from trainer.contract import EVAL_SPLIT, TRAIN_SPLIT
    from trainer.examples import read_training_examples
    from trainer.hparams import TrainingConfig

    return read_training_examples(data.split_files(digits_examples_uri, TRAIN_SPLIT),
                                  data.split_files(digits_examples_uri, EVAL_SPLIT), TrainingConfig())
