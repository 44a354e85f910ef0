"""summary.json: its paths are relative to the output folder, every reader resolves them, every field is documented."""

import json
import pathlib
import re

from ml_metadata.proto import metadata_store_pb2

from pipeline.config import Config
from pipeline.embed import encoder_folder
from pipeline.results.summary import PATH_FIELDS, build_summary, relative_path, resolve_path, with_relative_paths
from trainer import contract

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]


def artifact(uri, **properties):
    mlmd_artifact = metadata_store_pb2.Artifact(uri=uri)
    for name, value in properties.items():
        if isinstance(value, int):
            mlmd_artifact.custom_properties[name].int_value = value
        else:
            mlmd_artifact.custom_properties[name].string_value = value
    return mlmd_artifact


def run_results(output):
    """What run_results gives for a run into `output`: a Pretrainer, a completed push and a cached Evaluator."""
    return {
        "Pretrainer": {"state": "CACHED", "seconds": 0.1, "properties": {},
                       "outputs": {"model": [artifact(f"{output}/tfx/Pretrainer/model/3")]}},
        "Pusher": {"state": "COMPLETE", "seconds": 1.5, "properties": {}, "outputs": {"pushed_model": [
            artifact(f"{output}/tfx/Pusher/pushed_model/9", pushed=1,
                     pushed_destination=f"{output}/serving/1796160818")]}},
    }


def test_paths_inside_the_output_become_relative_and_others_stay_absolute(tmp_path):
    output = tmp_path / "out"
    summary = build_summary(Config(), run_results(output), failure=None, run_id="run-1")
    summary.update(report=str(output / "report.html"), evaluation="gs://bucket/Evaluator/evaluation/5",
                   production={"production_model": "/models/elsewhere/7"})
    written = with_relative_paths(summary, str(output), str(output))
    assert written["pushed_model"] == "serving/1796160818" and written["report"] == "report.html"
    assert written["timings"]["pretrainer"]["model"] == "tfx/Pretrainer/model/3"
    assert written["evaluation"] == "gs://bucket/Evaluator/evaluation/5"  # a URI stays as it is
    assert written["production"]["production_model"] == "/models/elsewhere/7"  # outside the output folder
    assert written["pushed_earlier"] is None
    assert written["config"] == summary["config"] and written["decision"] == summary["decision"]
    assert summary["pushed_model"] == str(output / "serving" / "1796160818")  # the input is not changed
    for field in ("pushed_model", "report"):
        assert resolve_path(written[field], str(output)) == summary[field]


def test_a_label_budgets_summary_is_relative_to_its_own_folder(tmp_path):
    output = tmp_path / "out"
    budget = output / "labels-5"
    summary = build_summary(Config(), run_results(output), failure=None, run_id="run-1")
    written = with_relative_paths(summary, str(budget), str(output))
    assert written["timings"]["pretrainer"]["model"] == "../tfx/Pretrainer/model/3"
    assert resolve_path(written["timings"]["pretrainer"]["model"], str(budget)) == str(
        output / "labels-5" / ".." / "tfx" / "Pretrainer" / "model" / "3")
    assert relative_path(str(tmp_path / "outside"), str(budget), str(output)) == str(tmp_path / "outside")
    assert relative_path(str(tmp_path / "out-2" / "x"), str(output), str(output)) == str(tmp_path / "out-2" / "x")


def test_selfsup_embed_finds_the_encoder_a_relative_summary_names(tmp_path):
    encoder = tmp_path / "run" / "tfx" / "Pretrainer" / "model" / "3"
    encoder.mkdir(parents=True)
    (encoder / "encoder.json").write_text("{}")
    (tmp_path / "run" / "summary.json").write_text(
        json.dumps({"timings": {"pretrainer": {"model": "tfx/Pretrainer/model/3"}}}))
    assert encoder_folder(str(tmp_path / "run")) == str(encoder)


def test_the_readme_documents_every_field_of_summary_json():
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("`summary.json` has "):]
    section = section[:section.index("\n\n")]
    documented = set(re.findall(r"`([a-z_]+)`", section))
    fields = set(build_summary(Config(), {}, failure=None)) | {"started", "finished"}
    assert fields <= documented, fields - documented
    assert {field[0] for field in PATH_FIELDS} <= documented
    assert "relative to" in section


def test_a_run_that_stopped_before_the_evaluator_still_summarises_its_data_and_training(tmp_path):
    """summary.json projects the parts of the result model the run produced: the ingest report and the
    Trainers' recorded timings, with no evaluation, decision numbers or blessing."""
    ingest = tmp_path / "tfx" / "ImageExampleGen" / "report" / "1"
    ingest.mkdir(parents=True)
    splits = {"train": {"written": 4}, "eval": {"written": 2}}
    (ingest / contract.INGEST_REPORT_FILE).write_text(json.dumps(
        {"class_names": ["cat", "dog"], "splits": splits, "skipped": [], "source": "folder"}))
    pretrainer = tmp_path / "tfx" / "Pretrainer" / "model" / "2"
    pretrainer.mkdir(parents=True)
    (pretrainer / contract.HISTORY_FILE).write_text(json.dumps(
        {"role": "pretrainer", "history": {}, "timings": {"pretrain_seconds": 12.25, "knn_seconds": 1.5}}))
    results = {
        contract.IMAGE_EXAMPLE_GEN: {"state": "COMPLETE", "properties": {},
                                     "outputs": {"report": [artifact(str(ingest))]}},
        contract.PRETRAINER: {"state": "COMPLETE", "properties": {}, "outputs": {"model": [artifact(str(pretrainer))]}},
        contract.CANDIDATE_TRAINER: {"state": "FAILED", "properties": {}, "outputs": {}},
    }
    summary = build_summary(Config(), results, failure="CandidateTrainer failed")
    assert summary["data"]["class_names"] == ["cat", "dog"] and summary["data"]["splits"] == splits
    assert summary["data"]["ignored_non_image_files"] == [] and summary["data"]["input"] == {"ingestion": "ran"}
    assert summary["data"]["ingest_report"] == str(ingest / contract.INGEST_REPORT_FILE)
    assert summary["timings"] == {"pretrainer": {"state": "COMPLETE", "model": str(pretrainer), "seconds": 13.8,
                                                 "pretrain_seconds": 12.25, "knn_seconds": 1.5}}
    assert summary["candidate"]["accuracy"] is None and summary["blessed"] is False and "evaluation" not in summary
    assert summary["decision"] == "The run failed before a decision: CandidateTrainer failed"
    assert build_summary(Config(), results, failure=None)["decision"] == "No evaluation result was found."
