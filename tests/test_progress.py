"""Progress: a bar with an ETA on a terminal, a line per epoch (or per tenth) otherwise (trainer/progress.py)."""

import dataclasses
import io
import os

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import log_text

from trainer import progress


class FakeStream(io.StringIO):
    """A text stream that says whether it is a terminal."""

    def __init__(self, terminal: bool):
        super().__init__()
        self.terminal = terminal

    def isatty(self):
        return self.terminal


def test_a_pseudo_terminal_gets_a_bar_and_a_pipe_or_file_does_not(tmp_path):
    primary, secondary = os.openpty()
    reader, writer = os.pipe()
    try:
        with open(secondary, "w", closefd=False) as terminal, open(writer, "w", closefd=False) as pipe, \
                open(tmp_path / "log.txt", "w") as log_file:
            assert progress.shows_bar(terminal)
            assert not progress.shows_bar(pipe) and not progress.shows_bar(log_file)
    finally:
        for fd in (primary, secondary, reader, writer):
            os.close(fd)
    closed = io.StringIO()
    closed.close()
    assert not progress.shows_bar(closed) and not progress.shows_bar(object())


def test_the_decision_follows_sys_stderr_by_default(monkeypatch):
    for terminal in (True, False):
        monkeypatch.setattr("sys.stderr", FakeStream(terminal))
        assert progress.shows_bar() is terminal
        callbacks, verbose = progress.fit_progress("pretrain")
        assert verbose == 0 and [type(callback) for callback in callbacks] == [
            progress.EpochBar if terminal else progress.EpochLines]


def tiny_fit(dataset, stream, epochs=3, initial_epoch=0):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(2, activation="softmax")])
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    callbacks, verbose = progress.fit_progress("linear", stream)
    model.fit(dataset, epochs=epochs, callbacks=callbacks, verbose=verbose, initial_epoch=initial_epoch)
    return callbacks


def batches():
    features = np.random.default_rng(0).normal(size=(16, 2)).astype("float32")
    return tf.data.Dataset.from_tensor_slices((features, np.zeros(16, "int64"))).batch(4)  # 4 steps an epoch


def test_on_a_terminal_one_bar_covers_every_step_of_the_phase_with_an_eta_and_a_line_per_epoch(capsys):
    stream = FakeStream(terminal=True)
    tiny_fit(batches(), stream)
    written = stream.getvalue()
    assert "linear: " in written and "12/12" in written  # 3 epochs x 4 steps in one bar
    assert "<00:00" in written  # tqdm's remaining time (ETA)
    lines = [line for line in written.replace("\r", "\n").splitlines() if line.startswith("linear epoch")]
    assert [line.split(" - ")[0] for line in lines] == ["linear epoch 1/3", "linear epoch 2/3", "linear epoch 3/3"]
    assert all(" - loss: " in line and " - accuracy: " in line for line in lines)
    assert "Epoch 1/3" not in capsys.readouterr().out  # Keras prints nothing itself (verbose=0)


def test_a_dataset_of_unknown_length_gets_its_total_after_the_first_epoch():
    stream = FakeStream(terminal=True)
    unknown_length = batches().filter(lambda features, labels: True)
    assert unknown_length.cardinality() == tf.data.UNKNOWN_CARDINALITY
    tiny_fit(unknown_length, stream)
    assert "12/12" in stream.getvalue()


@pytest.mark.parametrize("known_length", [True, False])
def test_a_resumed_phase_starts_its_bar_where_it_resumed(known_length):
    stream = FakeStream(terminal=True)
    dataset = batches() if known_length else batches().filter(lambda features, labels: True)
    tiny_fit(dataset, stream, initial_epoch=1)  # as after a kill (trainer/checkpoints.py)
    written = stream.getvalue()
    assert "12/12" in written and "0/12" not in written
    assert [line.split(" - ")[0] for line in written.replace("\r", "\n").splitlines()
            if line.startswith("linear epoch")] == ["linear epoch 2/3", "linear epoch 3/3"]


def test_off_a_terminal_the_selfsup_logger_gets_one_line_per_epoch_and_there_is_no_bar(capsys, caplog):
    stream = FakeStream(terminal=False)
    tiny_fit(batches(), stream)
    assert stream.getvalue() == ""
    lines = log_text(caplog).splitlines()
    assert [line.split(" - ")[0] for line in lines] == ["linear epoch 1/3", "linear epoch 2/3", "linear epoch 3/3"]
    assert all(" s - accuracy: " in line and " - loss: " in line for line in lines)
    assert {record.levelname for record in caplog.records} == {"INFO"}
    assert {record.name for record in caplog.records} == {"selfsup.trainer.progress"}
    out = capsys.readouterr().out
    assert "Epoch 1/3" not in out and "\r" not in out  # Keras prints nothing itself (verbose=0)


@pytest.mark.parametrize("terminal", [True, False])
def test_counted_work_is_a_bar_on_a_terminal_and_a_log_line_per_tenth_otherwise(terminal, caplog):
    stream = FakeStream(terminal)
    counter = progress.Progress(40, "Ingesting", "image", stream)
    for _ in range(40):
        counter.update()
    counter.close()
    written = stream.getvalue()
    if terminal:
        assert "Ingesting: " in written and "40/40" in written and "image/s" in written
        assert log_text(caplog) == ""
    else:
        assert written == ""
        assert log_text(caplog).splitlines() == [f"Ingesting: {done}/40 images" for done in range(4, 41, 4)]


def test_an_unknown_total_logs_no_lines_off_a_terminal(caplog):
    stream = FakeStream(terminal=False)
    counter = progress.Progress(None, "Ingesting", "image", stream)
    counter.update(5)
    counter.close()
    assert stream.getvalue() == "" and log_text(caplog) == "" and counter.done == 5


@pytest.mark.parametrize("terminal", [True, False])
def test_ingestion_counts_every_image_it_checks(tmp_path, monkeypatch, caplog, terminal):
    import apache_beam as beam
    from image_samples import write_image_folder

    from components.image_example_gen.ingest import ingest
    from pipeline.config import DataConfig

    stream = FakeStream(terminal)
    monkeypatch.setattr("sys.stderr", stream)
    root = write_image_folder(tmp_path / "data")  # 8 unlabeled, 12 train and 6 eval images
    ingest(dataclasses.asdict(DataConfig(path=str(root))), str(tmp_path / "examples"), str(tmp_path / "report"),
           lambda: beam.Pipeline(argv=["--runner=DirectRunner"]))
    written = stream.getvalue()
    if terminal:
        assert "Ingesting images: " in written and "26/26" in written
    else:
        counted = [line for line in log_text(caplog).splitlines() if line.startswith("Ingesting images: ")]
        assert counted[-1] == "Ingesting images: 26/26 images"
