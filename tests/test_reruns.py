"""Re-runs into one output: changed data re-runs ingestion, an untouched folder hits the cache, each run reads
its own results, and a second run into the same output is refused while the first holds it.

The pipeline here is ImageExampleGen alone, run for real (LocalDagRunner, Beam, MLMD in SQLite), each
run under its own run id as `pipeline.local_runner` runs the whole pipeline.
"""

import json
import logging
import os
import pathlib
import subprocess
import sys
import time

import pytest
from image_samples import encode, write_image_folder
from ml_metadata.proto import metadata_store_pb2
from tfx import v1 as tfx
from tfx.dsl.compiler import compiler, constants
from tfx.orchestration.portable import runtime_parameter_utils

from components.image_example_gen.component import ImageExampleGen
from pipeline import cli
from pipeline.config import Config, DataConfig
from pipeline.local_runner import new_run_id, run_pipeline_ir
from pipeline.pipeline import data_config_json
from pipeline.results.run_results import open_store, run_results
from pipeline.results.summary import build_summary, ingestion_status
from pipeline.run_lock import LOCK_FILE, output_lock
from trainer.contract import INGEST_REPORT_FILE as REPORT_FILE
from trainer.contract import INPUT_FINGERPRINT_PROPERTY as FINGERPRINT_PROPERTY

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
PIPELINE_NAME = "reruns"
CHANGED = "ran: the input files changed since the previous ingestion (files added, removed or modified)"


def run_example_gen(data_dir: pathlib.Path, work_dir: pathlib.Path) -> str:
    """Runs the ImageExampleGen-only pipeline over `data_dir` as a new run; returns the run id."""
    config = Config(data=DataConfig(path=str(data_dir)))
    pipeline = tfx.dsl.Pipeline(
        pipeline_name=PIPELINE_NAME, pipeline_root=str(work_dir / "tfx"),
        components=[ImageExampleGen(data_config=data_config_json(config))], enable_cache=True,
        metadata_connection_config=tfx.orchestration.metadata.sqlite_metadata_connection_config(
            str(work_dir / "metadata.sqlite")),
    )
    run_id = new_run_id()
    pipeline_ir = compiler.Compiler().compile(pipeline)
    runtime_parameter_utils.substitute_runtime_parameter(
        pipeline_ir, {constants.PIPELINE_RUN_ID_PARAMETER_NAME: run_id})
    run_pipeline_ir(pipeline_ir)
    return run_id


class Lines(logging.Handler):
    """Keeps the messages of the records it is given."""

    def __init__(self):
        super().__init__(logging.INFO)
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


def shift_mtime(path: pathlib.Path, seconds: int = 1) -> None:
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + seconds * 1_000_000_000))


@pytest.fixture(scope="module")
def reruns(tmp_path_factory):
    """Six runs over one folder: untouched, a file added, one removed, one rewritten, untouched again."""
    tmp_path = tmp_path_factory.mktemp("reruns")
    data = write_image_folder(tmp_path / "data")
    rewritten = data / "unlabeled" / "u0.jpg"
    changes = {
        "first": lambda: None,
        "untouched": lambda: None,
        "added": lambda: (data / "unlabeled" / "new.png").write_bytes(encode("RGB", seed=4242)),
        "removed": lambda: (data / "labeled" / "cat" / "0.png").unlink(),
        "rewritten": lambda: (rewritten.write_bytes(b"now a broken image"), shift_mtime(rewritten)),
        "untouched again": lambda: None,
    }
    runs = {}
    absl_logger = logging.getLogger("absl")  # TFX logs through absl
    level = absl_logger.level
    absl_logger.setLevel(logging.INFO)
    for name, change in changes.items():
        change()
        lines = Lines()
        absl_logger.addHandler(lines)
        try:
            run_id = run_example_gen(data, tmp_path)
        finally:
            absl_logger.removeHandler(lines)
        store = open_store(str(tmp_path / "metadata.sqlite"))
        results = run_results(store, PIPELINE_NAME, run_id)
        example_gen = results["ImageExampleGen"]
        (examples,), (report,) = example_gen["outputs"]["examples"], example_gen["outputs"]["report"]
        with open(os.path.join(report.uri, REPORT_FILE)) as handle:
            ingest_report = json.load(handle)
        runs[name] = dict(run_id=run_id, results=results, state=example_gen["state"], examples=examples,
                          report=ingest_report, ingestion=ingestion_status(results, store, PIPELINE_NAME, run_id),
                          component_lines=[line for line in lines.messages if line.startswith("Component ")])
    absl_logger.setLevel(level)
    return dict(runs=runs, metadata=str(tmp_path / "metadata.sqlite"))


def written(run):
    return {split: counts["written"] for split, counts in run["report"]["splits"].items()}


def test_an_untouched_folder_reuses_ingestion_from_the_cache(reruns):
    runs = reruns["runs"]
    assert runs["first"]["state"] == "COMPLETE"
    assert runs["first"]["ingestion"] == "ran: first ingestion into this output folder"
    for name, reused in (("untouched", "first"), ("untouched again", "rewritten")):
        assert runs[name]["state"] == "CACHED", name
        assert runs[name]["examples"].id == runs[reused]["examples"].id, name
        assert runs[name]["ingestion"].startswith("reused from the cache: the input files are unchanged")


def test_added_removed_and_rewritten_files_rerun_ingestion_with_the_new_counts(reruns):
    runs = reruns["runs"]
    expected = {  # written per split, files fingerprinted, unlabeled images skipped
        "first": ({"unlabeled": 8, "train": 12, "eval": 6}, 26, 0),
        "added": ({"unlabeled": 9, "train": 12, "eval": 6}, 27, 0),
        "removed": ({"unlabeled": 9, "train": 11, "eval": 6}, 26, 0),
        "rewritten": ({"unlabeled": 8, "train": 11, "eval": 6}, 26, 1),  # same name, now undecodable
    }
    fingerprints = set()
    for name, (counts, files, skipped) in expected.items():
        run = runs[name]
        assert run["state"] == "COMPLETE", name
        assert written(run) == counts and run["report"]["input"]["files"] == files, name
        assert run["report"]["splits"]["unlabeled"]["skipped"] == skipped, name
        fingerprint = run["report"]["input"]["fingerprint"]
        assert run["examples"].custom_properties[FINGERPRINT_PROPERTY].string_value == fingerprint
        fingerprints.add(fingerprint)
        if name != "first":
            assert run["ingestion"] == CHANGED, name
    assert len(fingerprints) == 4
    assert [row["id"] for row in runs["rewritten"]["report"]["skipped"]] == ["unlabeled/u0.jpg"]


def test_each_component_line_says_cached_or_how_long_the_component_took(reruns):
    runs = reruns["runs"]
    first = runs["first"]["component_lines"]
    assert first[0] == "Component ImageExampleGen is running." and len(first) == 2
    assert first[1].startswith("Component ImageExampleGen: done in ") and first[1].endswith(" s")
    seconds = float(first[1].split(" done in ")[1][:-2])
    assert 0 < seconds < 300
    assert runs["untouched"]["component_lines"] == ["Component ImageExampleGen is running.",
                                                    "Component ImageExampleGen: CACHED"]


def test_run_results_reads_only_its_own_run(reruns):
    runs = reruns["runs"]
    first, untouched = runs["first"], runs["untouched"]
    assert first["run_id"] != untouched["run_id"]
    assert set(first["results"]) == set(untouched["results"]) == {"ImageExampleGen"}
    assert (first["results"]["ImageExampleGen"]["state"], untouched["results"]["ImageExampleGen"]["state"]) == (
        "COMPLETE", "CACHED")
    assert FINGERPRINT_PROPERTY in first["results"]["ImageExampleGen"]["properties"]
    store = open_store(reruns["metadata"])
    assert run_results(store, PIPELINE_NAME, first["run_id"])["ImageExampleGen"]["state"] == "COMPLETE"
    assert run_results(store, PIPELINE_NAME, "a run id nobody used") is None


def test_a_cached_pusher_is_said_to_have_pushed_nothing_in_this_run():
    """summary.json of a run whose Pusher came from the cache: the push was an earlier run's."""
    pushed_model = metadata_store_pb2.Artifact(uri="/out/tfx/Pusher/pushed_model/7")
    pushed_model.custom_properties["pushed"].int_value = 1
    pushed_model.custom_properties["pushed_destination"].string_value = "/out/serving/1795641810"
    results = {"Pusher": {"state": "CACHED", "outputs": {"pushed_model": [pushed_model]}, "properties": {}}}
    summary = build_summary(Config(), results, failure=None, run_id="run-2")
    assert summary["pushed_model"] is None and summary["pushed_earlier"] == "/out/serving/1795641810"
    assert summary["decision"].endswith(
        "Nothing was pushed in this run (the Pusher was reused from the cache); the model pushed earlier is "
        "/out/serving/1795641810.")
    results["Pusher"]["state"] = "COMPLETE"
    summary = build_summary(Config(), results, failure=None, run_id="run-1")
    assert summary["pushed_model"] == "/out/serving/1795641810" and summary["pushed_earlier"] is None
    assert "Nothing was pushed" not in summary["decision"]


HOLDER = """
import pathlib, sys, time
from pipeline.run_lock import output_lock
with output_lock(sys.argv[1]):
    pathlib.Path(sys.argv[2]).touch()
    time.sleep(300)
"""


def test_a_second_run_into_a_locked_output_fails_at_once_naming_the_first(tmp_path, capsys):
    data = write_image_folder(tmp_path / "data")
    config = tmp_path / "small.yaml"  # the data checks pass: the lock is what stops the run
    config.write_text("training:\n  batch_size: 8\nevaluation:\n  min_eval_per_class: 3\n")
    output, ready = tmp_path / "out", tmp_path / "holder-ready"
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(output), str(ready)], cwd=REPO_ROOT)
    try:
        deadline = time.monotonic() + 60
        while not ready.exists():
            assert holder.poll() is None and time.monotonic() < deadline, "the lock holder did not start"
            time.sleep(0.1)
        started = time.monotonic()
        assert cli.main(["run", "--data", str(data), "--output", str(output), "--config", str(config)]) == 2
        assert time.monotonic() - started < 30
        error = capsys.readouterr().err
        assert f"another selfsup run (PID {holder.pid}, started 20" in error and str(output) in error
        assert sorted(os.listdir(output)) == [LOCK_FILE]  # nothing of the pipeline started
    finally:
        holder.kill()  # SIGKILL: no clean-up code runs, the kernel releases the flock
        holder.wait()
    with output_lock(str(output)):
        assert json.loads((output / LOCK_FILE).read_text())["pid"] == os.getpid()


def test_a_run_of_image_example_gen_lists_the_data_once(tmp_path, monkeypatch):
    """The driver lists the data for the fingerprint; the executor, in the same process, takes that plan."""
    from test_ingest import counting_plans

    from components.image_example_gen import driver

    calls = counting_plans(monkeypatch)
    run_example_gen(write_image_folder(tmp_path / "data"), tmp_path / "work")
    assert len(calls) == 1
    assert not driver._PLANNED  # the executor took the driver's plan
    assert list((tmp_path / "work" / "tfx").glob(f"ImageExampleGen/report/*/{REPORT_FILE}"))
