"""The CLI contract: bad input fails fast with a message naming the problem, before any work."""

import dataclasses
import importlib.metadata
import importlib.util
import io
import json
import logging
import os
import re
import shutil

import numpy as np
import pytest
import yaml
from image_samples import encode, write_image_folder

from pipeline import cli
from pipeline.config import Config, config_from_dict, load_config
from pipeline.demo_data import write_digits_dataset
from pipeline.local_runner import check_data_before_running
from pipeline.results.summary import build_summary
from trainer import log


@pytest.fixture(autouse=True)
def restore_root_logger():
    """cli.main replaces the root logger's handler with one on this test's (captured) stderr, and sets the level
    of the `selfsup` logger (WARNING with -q)."""
    root, selfsup = logging.getLogger(), logging.getLogger(log.NAME)
    handlers, level, selfsup_level = root.handlers[:], root.level, selfsup.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    selfsup.setLevel(selfsup_level)


# Where TFX's records come from: LocalDagRunner's module logs the component lines, the launcher the cache hits.
TFX_ROOT = os.path.dirname(importlib.util.find_spec("tfx").origin)
TFX_RUNNER = os.path.join(TFX_ROOT, "orchestration", "local", "local_dag_runner.py")
TFX_LAUNCHER = os.path.join(TFX_ROOT, "orchestration", "portable", "launcher.py")
TF_DEPRECATION = os.path.join(os.path.dirname(importlib.util.find_spec("tensorflow").origin), "python", "util",
                              "deprecation.py")


def log_from(pathname, logger_name, level, message, *args):
    """Logs a record as the library module `pathname` would (through `logger_name`'s filters and handlers)."""
    logger = logging.getLogger(logger_name)
    logger.handle(logger.makeRecord(logger_name, level, pathname, 1, message, args, None))


def test_bad_config_key_exits_2_naming_the_key(tmp_path, capsys):
    config = tmp_path / "config.yaml"
    config.write_text("training:\n  batch_size: -3\n")
    output = tmp_path / "out"
    assert cli.main(["run", "--data", str(tmp_path), "--output", str(output), "--config", str(config)]) == 2
    assert "config key 'training.batch_size'" in capsys.readouterr().err
    assert not output.exists()  # nothing was started


def test_missing_data_folder_exits_2_before_the_pipeline_starts(tmp_path, capsys):
    output = tmp_path / "out"
    assert cli.main(["run", "--data", str(tmp_path / "nope"), "--output", str(output)]) == 2
    assert "data folder does not exist" in capsys.readouterr().err
    assert not output.exists()


def test_output_inside_the_data_folder_is_refused(tmp_path, capsys):
    data = tmp_path / "data"
    write_digits_dataset(str(data), labeled_per_class=2, test_per_class=1)
    assert cli.main(["run", "--data", str(data), "--output", str(data / "out")]) == 2
    assert "must not be inside the data folder" in capsys.readouterr().err


def test_demo_dataset_is_real_digits_in_the_folder_layout(tmp_path):
    counts = write_digits_dataset(str(tmp_path), labeled_per_class=10, test_per_class=30)
    assert counts == {"labeled": 100, "test": 300, "unlabeled": 1397}
    assert sorted(path.name for path in (tmp_path / "labeled").iterdir()) == [str(digit) for digit in range(10)]
    assert len(list((tmp_path / "unlabeled").glob("*.png"))) == 1397


def test_readme_documents_every_config_key():
    with open(cli.os.path.join(cli.os.path.dirname(cli.__file__), "..", "README.md"), encoding="utf-8") as handle:
        readme = handle.read()
    documented = set(re.findall(r"^\| `([a-z_]+\.[a-z_0-9]+)` \|", readme, flags=re.MULTILINE))
    config = Config()
    expected = {f"{section.name}.{field.name}" for section in dataclasses.fields(config)
                for field in dataclasses.fields(getattr(config, section.name))}
    assert documented == expected, {"undocumented": expected - documented, "stale": documented - expected}


@pytest.mark.parametrize("argv", [["demo", "--help"], ["run", "--help"]])
def test_help_lists_the_options(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(argv)
    assert exit_info.value.code == 0
    assert "--output" in capsys.readouterr().out


def small_config(tmp_path, text="training:\n  batch_size: 8\nevaluation:\n  min_eval_per_class: 3\n"):
    path = tmp_path / "small.yaml"
    path.write_text(text)
    return str(path)


def test_too_few_eval_images_of_a_class_exit_2_before_the_pipeline_naming_the_class(tmp_path, capsys):
    data = write_image_folder(tmp_path / "data")  # test/cat and test/dog: 3 images each
    for index in range(3, 5):
        (data / "test" / "dog" / f"{index}.png").write_bytes(encode("RGB", seed=600 + index))
    output = tmp_path / "out"
    config = small_config(tmp_path, "training:\n  batch_size: 8\nevaluation:\n  min_eval_per_class: 4\n")
    assert cli.main(["run", "--data", str(data), "--output", str(output), "--config", config]) == 2
    error = capsys.readouterr().err
    assert "fewer than evaluation.min_eval_per_class=4 images of the classes {'cat': 3}" in error
    assert not output.exists()


def test_a_class_missing_from_the_eval_split_fails_before_the_pipeline(tmp_path):
    data = write_image_folder(tmp_path / "data")
    shutil.rmtree(data / "test" / "dog")
    config = load_config(small_config(tmp_path), {"data.path": str(data)})
    with pytest.raises(ValueError, match=r"has no images of the classes \['dog'\]"):
        check_data_before_running(config)


def test_fewer_pretraining_images_than_a_batch_exit_2_naming_training_batch_size(tmp_path, capsys):
    data = write_image_folder(tmp_path / "data")  # 8 unlabeled + 12 train images, the default batch is 256
    output = tmp_path / "out"
    config = small_config(tmp_path, "evaluation:\n  min_eval_per_class: 3\n")
    assert cli.main(["run", "--data", str(data), "--output", str(output), "--config", config]) == 2
    error = capsys.readouterr().err
    assert "has 20 images for pretraining (unlabeled + train), fewer than one batch of training.batch_size=256" in error
    assert "set training.batch_size to at most 20" in error
    assert not output.exists()


def test_an_output_that_is_an_existing_file_exits_2_with_a_clean_message(tmp_path, capsys):
    data = write_image_folder(tmp_path / "data")
    output = tmp_path / "results.txt"
    output.write_text("not a folder")
    assert cli.main(["run", "--data", str(data), "--output", str(output), "--config", small_config(tmp_path)]) == 2
    error = capsys.readouterr().err
    assert error.strip() == f"selfsup: error: --output {output} is an existing file, not a folder"
    assert output.read_text() == "not a folder"


# --- Flags: --version, --set, config.yaml, -q/-v, --require-blessed, stdout/stderr, --json -------------------


def test_version_names_selfsup_tfx_tensorflow_and_keras(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--version"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"selfsup {importlib.metadata.version('selfsup')} (")
    for name, distribution in (("TFX", "tfx"), ("TensorFlow", "tensorflow"), ("Keras", "keras")):
        assert f"{name} {importlib.metadata.version(distribution)}" in out
    assert len(out.strip().splitlines()) == 1


def test_help_documents_every_exit_code(capsys):
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    out = capsys.readouterr().out
    for code in range(4):
        assert re.search(rf"^  {code}  ", out, flags=re.MULTILINE), out
    assert "--require-blessed" in out


class FakeRun:
    """Stands in for pipeline.local_runner.run_local: logs like the Trainers do (a `selfsup` INFO line), prints
    like the libraries in the run do (a print() and a Keras fit with verbose=2, through sys.stdout, and a C-level
    write to fd 1), records what it was given and returns a summary. Tests the CLI, not the pipeline."""

    def __init__(self, blessed=False, failure=None):
        self.blessed, self.failure, self.calls = blessed, failure, []

    def summary(self):
        return {"status": "succeeded", "blessed": self.blessed, "decision":
                "BLESSED and pushed" if self.blessed else "NOT BLESSED: candidate (simclr) accuracy 0.5 vs 0.6",
                "candidate": {"accuracy": 0.5}, "baseline": {"accuracy": 0.6}, "data": None, "report": None}

    def __call__(self, config, output_dir):
        import keras

        config_file = os.path.join(output_dir, cli.CONFIG_FILE)
        self.calls.append({"config": config, "config_yaml_before_the_run": os.path.isfile(config_file)})
        logging.getLogger("selfsup.trainer.pretrain").info("pretraining simclr: 2 epochs")
        print("a library's print()", flush=True)
        model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(2, activation="softmax")])
        model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
        model.fit(np.zeros((4, 2)), np.zeros(4), epochs=2, verbose=2)
        os.write(1, b"C-level write to fd 1\n")
        if self.failure:
            raise RuntimeError(self.failure)
        return self.summary()


@pytest.fixture
def fake_run(monkeypatch):
    def install(**kwargs):
        fake = FakeRun(**kwargs)
        monkeypatch.setattr("pipeline.local_runner.run_local", fake)
        return fake
    return install


def run_args(tmp_path, *extra):
    """`selfsup run` on a small folder that passes every check before the pipeline."""
    data = tmp_path / "data" if (tmp_path / "data").exists() else write_image_folder(tmp_path / "data")
    return ["run", "--data", str(data), "--output", str(tmp_path / "out"), "--config", small_config(tmp_path),
            *extra]


def test_set_values_are_read_as_yaml_and_override_the_file(tmp_path, fake_run):
    fake = fake_run()
    assert cli.main(run_args(tmp_path, "--set", "training.pretrain_epochs=5", "--set", "data.eval_fraction=0.1",
                             "--set", "evaluation.compare_to_pushed=true", "--set", "pipeline.beam_args=[--a, --b]",
                             "--set", "training.finetune_augment={flip_probability: 0}",
                             "--set", "training.pretrain_augment.hue=0.2", "--set", "training.batch_size=16")) == 0
    config = fake.calls[0]["config"]
    assert (config.training.pretrain_epochs, config.data.eval_fraction, config.evaluation.compare_to_pushed) == (
        5, 0.1, True)
    assert config.pipeline.beam_args == ["--a", "--b"]
    assert config.training.finetune_augment == {"flip_probability": 0.0}
    assert config.training.pretrain_augment == {"hue": 0.2}
    assert config.training.batch_size == 16  # the file says 8
    assert config.evaluation.min_eval_per_class == 3  # the file's value stays


@pytest.mark.parametrize("setting, message", [
    ("training.bacth_size=8", "config key 'training.bacth_size': unknown key; known keys of 'training' are"),
    ("training.batch_size=-3", "config key 'training.batch_size': must be a positive integer, got -3"),
    ("training.method=mocov3", "config key 'training.method': must be one of"),
    ("training.pretrain_augment.hue=loud", "config key 'training.pretrain_augment.hue': must be a number"),
    ("training.pretrain_learning_rate=1e-3", "write 1.0e-3 or 0.001"),
    ("traning.batch_size=8", "config key 'traning': unknown section"),
    ("training.batch_size.x=1", "config key 'training.batch_size': is 8, not a mapping"),
    ("training.method=[simclr", "config key 'training.method': --set value '[simclr' is not valid YAML"),
    ("training=3", "config key 'training': --set needs a dotted SECTION.KEY"),
    ("training.batch_size", "--set 'training.batch_size': expected KEY=VALUE"),
])
def test_a_bad_setting_exits_2_naming_the_key_before_anything_is_written(tmp_path, capsys, setting, message):
    assert cli.main(run_args(tmp_path, "--set", setting)) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_setting_errors_are_reported_together_with_the_files(tmp_path, capsys):
    data = write_image_folder(tmp_path / "data")
    config = tmp_path / "bad.yaml"
    config.write_text("evaluation:\n  margin: 2\ntraining:\n  batch_size: 8\n  batch_size: 9\n")
    assert cli.main(["run", "--data", str(data), "--output", str(tmp_path / "out"), "--config", str(config),
                     "--method", "byol", "--set", "training.method=simsiam", "--set", "training.temperature=warm",
                     "--set", "data.bogus=1", "--set", "data.bogus=2"]) == 2
    header, *problems = capsys.readouterr().err.strip().splitlines()
    assert header == f"selfsup: error: 6 problems in {config} and --set:"
    assert [re.match(r"config key '([^']+)'", line).group(1) for line in problems] == [
        "training.batch_size", "training.method", "data.bogus", "evaluation.margin", "training.temperature",
        "data.bogus"]
    assert problems[1].endswith("is given twice on the command line: by an option such as --data or --method, "
                                "then --set training.method=simsiam")
    assert problems[2].endswith("is given twice on the command line: --set data.bogus=1, then --set data.bogus=2")
    assert not (tmp_path / "out").exists()


def test_demo_checks_its_settings_before_writing_the_dataset(tmp_path, capsys):
    output = tmp_path / "demo"
    assert cli.main(["demo", "--output", str(output), "--set", "training.pretrain_epochs=-1"]) == 2
    assert "config key 'training.pretrain_epochs': must be zero or more, got -1" in capsys.readouterr().err
    assert not output.exists()


def test_the_effective_config_is_written_before_the_run_and_reloads_as_the_same_config(tmp_path, fake_run):
    fake = fake_run()
    assert cli.main(run_args(tmp_path, "--method", "byol", "--set", "training.pretrain_augment.hue=0.2")) == 0
    call = fake.calls[0]
    assert call["config_yaml_before_the_run"]
    config_file = tmp_path / "out" / cli.CONFIG_FILE
    written = yaml.safe_load(config_file.read_text())
    assert written == call["config"].to_dict()  # every section and key, defaults included
    assert set(written["training"]) == {field.name for field in dataclasses.fields(call["config"].training)}
    assert load_config(str(config_file)) == call["config"]
    # and run again from it: --config OUT/config.yaml gives the same Config
    assert cli.main(["run", "--output", str(tmp_path / "again"), "--config", str(config_file)]) == 0
    assert fake.calls[1]["config"] == call["config"]


def test_summary_json_carries_the_effective_config(tmp_path):
    config = load_config(small_config(tmp_path), {"data.path": str(tmp_path)}, ["training.pretrain_augment.hue=0.2"])
    summary = build_summary(config, {}, None)
    assert summary["config"] == config.to_dict()
    assert config_from_dict(json.loads(json.dumps(summary))["config"]) == config


def test_label_budgets_write_config_yaml_once_in_the_output_and_json_prints_label_efficiency(
        tmp_path, capsys, monkeypatch):
    comparison = {"method": "simclr", "pretrain_seconds": 1.0, "pretrainer_runs": 1, "runs": [
        {"labels_per_class": budget, "candidate_accuracy": 0.5, "baseline_accuracy": 0.4, "blessed": blessed}
        for budget, blessed in ((2, False), (4, True))]}
    seen = {}

    def fake_budgets(config, output_dir, budgets):
        seen["config_yaml"] = os.path.isfile(os.path.join(output_dir, cli.CONFIG_FILE))
        print("[selfsup] label budget 2 per class")
        return comparison

    monkeypatch.setattr("pipeline.results.label_efficiency.run_budgets", fake_budgets)
    assert cli.main(run_args(tmp_path, "--label-budgets", "2", "4", "--json")) == 0
    assert seen["config_yaml"] and sorted(os.listdir(tmp_path / "out")) == [".selfsup.lock", cli.CONFIG_FILE]
    assert json.loads(capsys.readouterr().out) == comparison
    assert cli.main(run_args(tmp_path, "--label-budgets", "2", "4", "--require-blessed")) == 3  # budget 2 failed


@pytest.mark.parametrize("blessed, flags, code", [
    (False, [], 0), (False, ["--require-blessed"], 3), (True, ["--require-blessed"], 0), (True, [], 0),
])
def test_require_blessed_exits_3_only_when_not_blessed(tmp_path, fake_run, blessed, flags, code):
    fake_run(blessed=blessed)
    assert cli.main(run_args(tmp_path, *flags)) == code


def test_a_failed_component_exits_1(tmp_path, fake_run, capfd):
    fake_run(failure="pipeline run failed: RuntimeError: Trainer died (summary: out/summary.json)")
    assert cli.main(run_args(tmp_path, "--require-blessed")) == 1
    captured = capfd.readouterr()
    assert captured.out == "" and "selfsup: pipeline run failed: RuntimeError: Trainer died" in captured.err


def test_stdout_holds_only_the_result_and_the_runs_prints_go_to_stderr(tmp_path, fake_run, capfd):
    fake_run()
    assert cli.main(run_args(tmp_path)) == 0
    captured = capfd.readouterr()
    assert captured.out.strip().splitlines()[1] == "selfsup: NOT BLESSED: candidate (simclr) accuracy 0.5 vs 0.6"
    for printed in ("pretraining simclr", "a library's print()", "Epoch 2/2", "C-level write to fd 1"):
        assert printed not in captured.out and printed in captured.err
    print("after the run")  # stdout is stdout again
    assert capfd.readouterr().out == "after the run\n"


def test_quiet_drops_the_runs_prints_and_keeps_the_result(tmp_path, fake_run, capfd):
    fake_run()
    assert cli.main(["-q", *run_args(tmp_path)]) == 0
    captured = capfd.readouterr()
    assert "selfsup: NOT BLESSED" in captured.out
    for printed in ("pretraining simclr", "a library's print()", "Epoch", "C-level"):
        assert printed not in captured.err + captured.out


def test_json_prints_the_returned_summary_and_nothing_else(tmp_path, fake_run, capfd):
    fake = fake_run()
    assert cli.main(run_args(tmp_path, "--json")) == 0
    assert json.loads(capfd.readouterr().out) == fake.summary()


SELFSUP_LINE, COMPONENT_LINE, WARNING_LINE = "pretraining simclr: 2 epochs", "Component Trainer is running.", "warned"
DEPLOYMENT_DUMP = "Using deployment config: ['executor', 'spec']"  # LocalDagRunner's, but about no one component
OTHER_INFO = ["Running pipeline with DirectRunner", "A cached execution 7 is used."]
NOISE = "From x.py: calling f (from tensorflow) is deprecated"
LOOKALIKES = ["From here: a warning", "Component Trainer is running, from a test."]  # worded as others, from elsewhere


def log_every_kind_of_line():
    logging.getLogger("selfsup.trainer.pretrain").info(SELFSUP_LINE)
    log_from(TFX_RUNNER, "absl", logging.INFO, "Component %s is running.", "Trainer")  # as LocalDagRunner logs it
    log_from(TFX_RUNNER, "absl", logging.INFO, "Using deployment config: %s", ["executor", "spec"])
    logging.getLogger("apache_beam.runners").info("Running pipeline with DirectRunner")
    log_from(TFX_LAUNCHER, "absl", logging.INFO, "A cached execution %d is used.", 7)
    logging.getLogger("absl").warning(WARNING_LINE)
    log_from(TF_DEPRECATION, "tensorflow", logging.WARNING, NOISE)
    # Worded like a noise line or like a component line, but from elsewhere: the wording decides nothing.
    logging.getLogger("absl").warning(LOOKALIKES[0])
    logging.getLogger("absl").info(LOOKALIKES[1])


@pytest.mark.parametrize("flags, shown, hidden", [
    ([], [SELFSUP_LINE, COMPONENT_LINE, WARNING_LINE, LOOKALIKES[0]], [DEPLOYMENT_DUMP, *OTHER_INFO, NOISE,
                                                                       LOOKALIKES[1]]),
    (["-q"], [WARNING_LINE, LOOKALIKES[0]], [SELFSUP_LINE, COMPONENT_LINE, DEPLOYMENT_DUMP, *OTHER_INFO, NOISE,
                                             LOOKALIKES[1]]),
    (["-v"], [SELFSUP_LINE, COMPONENT_LINE, WARNING_LINE, DEPLOYMENT_DUMP, *OTHER_INFO, NOISE, *LOOKALIKES], []),
])
def test_quiet_and_verbose_set_which_log_lines_reach_stderr(tmp_path, capsys, flags, shown, hidden):
    for position in ("before", "after"):  # selfsup -q run ... and selfsup run ... -q
        argv = ["run", "--data", str(tmp_path / "nope"), "--output", str(tmp_path / "out")]
        assert cli.main(flags + argv if position == "before" else argv + flags) == 2  # no such data folder
        capsys.readouterr()
        log_every_kind_of_line()
        err = capsys.readouterr().err
        assert all(line in err for line in shown) and not any(line in err for line in hidden), (position, err)


@pytest.mark.parametrize("flags, shown", [([], True), (["-q"], False), (["-v"], True)])
def test_a_selfsup_info_line_is_shown_by_default_and_hidden_with_quiet(tmp_path, flags, shown):
    records = []

    class Keep(logging.Handler):
        def emit(self, record):
            records.append(record)

    assert cli.main([*flags, "run", "--data", str(tmp_path / "nope"), "--output", str(tmp_path / "out")]) == 2
    handler = logging.getLogger().handlers[0]  # the one stderr handler cli.main installs
    keep = Keep()
    keep.filters, keep.level = handler.filters, handler.level  # what passes the CLI's handler
    logging.getLogger().addHandler(keep)
    logging.getLogger("selfsup.trainer.run").info("trained")
    logging.getLogger("selfsup.trainer.run").warning("careful")
    assert [(record.name, record.levelname) for record in records] == (
        [("selfsup.trainer.run", "INFO")] * shown + [("selfsup.trainer.run", "WARNING")])


def test_quiet_and_verbose_together_are_refused(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["-q", "run", "--output", str(tmp_path / "out"), "-v"])
    assert exit_info.value.code == 2
    assert "exclude each other" in capsys.readouterr().err



def test_component_lines_say_cached_or_the_duration_on_stderr(tmp_path, capsys):
    from pipeline.local_runner import ComponentLines

    assert cli.main(["run", "--data", str(tmp_path / "nope"), "--output", str(tmp_path / "out")]) == 2  # the handler
    capsys.readouterr()
    absl_logger, lines = logging.getLogger("absl"), ComponentLines()
    absl_logger.addFilter(lines)
    try:
        for component, cached in (("StatisticsGen", True), ("CandidateTrainer", False)):
            log_from(TFX_RUNNER, "absl", logging.INFO, "Component %s is running.", component)  # as LocalDagRunner
            if cached:
                log_from(TFX_LAUNCHER, "absl", logging.INFO, "A cached execution %d is used.", 7)
            log_from(TFX_RUNNER, "absl", logging.INFO, "Component %s is finished.", component)
    finally:
        absl_logger.removeFilter(lines)
    err = capsys.readouterr().err
    assert "Component StatisticsGen: CACHED" in err and "A cached execution" not in err
    assert re.search(r"Component CandidateTrainer: done in \d+\.\d s", err), err
    assert "is finished" not in err


class TerminalStream(io.StringIO):
    def isatty(self):
        return True


def test_quiet_draws_no_progress_bar_even_on_a_terminal(tmp_path, monkeypatch):
    from trainer import progress

    seen = []

    def run_local(config, output_dir):
        seen.append(progress.shows_bar())
        return FakeRun().summary()

    monkeypatch.setattr("pipeline.local_runner.run_local", run_local)
    monkeypatch.setattr("sys.stderr", TerminalStream())
    assert cli.main(run_args(tmp_path)) == 0 and cli.main(["-q", *run_args(tmp_path)]) == 0
    assert seen == [True, False]
