"""evaluation.compare_to_pushed: the candidate must also beat the model already in production.

The real executors run on the tiny colour classifiers of tests/test_report.py: ProductionModel finds
the latest pushed version in a serving folder laid out as TFX's Pusher writes it, TFX's Evaluator
compares the candidate with it (TFMA), BlessingGate combines both blessings, and the report and
summary explain the decision.
"""

import json
import os
import shutil

import pytest
from test_report import RULE, _mlmd_artifact, _output_artifact, make_comparison, make_tiny_run
from tfx.components.evaluator import executor as evaluator_executor
from tfx.components.util import examples_utils
from tfx.proto import example_gen_pb2
from tfx.types import artifact_utils, standard_artifacts
from tfx.utils import proto_utils

from components.artifacts import EvaluationReport, IngestReport
from components.blessing_gate import executor as gate_executor
from components.blessing_gate.component import BlessingGate
from components.blessing_gate.gate import all_blessed
from components.evaluation_report import executor as report_executor
from components.evaluation_report.html_report import render_html
from components.evaluation_report.report_data import collect_report_data
from components.production_model import executor as production_executor
from components.production_model.find import latest_pushed_model
from pipeline.config import Config, ConfigError, load_config
from pipeline.evaluation import build_production_eval_config
from pipeline.results import summary as summary_lib
from pipeline.results.report import report_inputs
from trainer import contract


def push(serving_dir, version: int, model_uri: str, complete: bool = True) -> str:
    """Copies a model's SavedModel to SERVING/<version>/ as the Pusher does (saved_model.pb last)."""
    folder = os.path.join(serving_dir, str(version))
    shutil.copytree(os.path.join(model_uri, "Format-Serving"), folder)
    if not complete:
        os.remove(os.path.join(folder, "saved_model.pb"))
    return folder


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("production")
    return {"root": root, "run": make_tiny_run(str(root / "run"))}


def blessing_artifact(folder, blessed: int):
    blessing = _output_artifact(standard_artifacts.ModelBlessing, folder)
    blessing.set_int_custom_property("blessed", blessed)
    return blessing


def model_artifact(uri: str, model_id: int):
    model = standard_artifacts.Model()
    model.uri, model.id = uri, model_id
    return model


def run_production_path(tiny, name: str, serving_dir: str):
    """ProductionModel -> TFX Evaluator (candidate vs production) -> BlessingGate -> report, for real."""
    run, root = tiny["run"], tiny["root"] / name
    candidate = model_artifact(run.inputs.candidate_model_uri, 1)
    baseline = model_artifact(run.inputs.baseline_model_uri, 2)
    production = _output_artifact(standard_artifacts.Model, str(root / "production_model"))
    production_executor.Executor().Do(
        {"candidate_model": [candidate], "baseline_model": [baseline]}, {"model": [production]},
        {"serving_dir": serving_dir},
    )
    evaluation = _output_artifact(standard_artifacts.ModelEvaluation, str(root / "evaluation"))
    production_blessing = _output_artifact(standard_artifacts.ModelBlessing, str(root / "production_blessing"))
    examples = _artifact_at(standard_artifacts.Examples, run.examples_uri)
    examples.split_names = artifact_utils.encode_split_names(["eval"])
    examples_utils.set_payload_format(examples, example_gen_pb2.PayloadFormat.FORMAT_TF_EXAMPLE)
    examples_utils.set_file_format(examples, "tfrecords_gzip")
    evaluator_executor.Executor().Do(
        {"examples": [examples], "model": [candidate], "baseline_model": [production]},
        {"evaluation": [evaluation], "blessing": [production_blessing]},
        {"eval_config": proto_utils.proto_to_json(build_production_eval_config()),
         "example_splits": json.dumps(["eval"])},
    )
    baseline_blessing = blessing_artifact(str(root / "baseline_blessing"), 1)  # the tiny run's candidate won
    gate = _output_artifact(standard_artifacts.ModelBlessing, str(root / "gate"))
    gate_executor.Executor().Do(
        {"model": [candidate], "baseline_blessing": [baseline_blessing], "production_blessing": [production_blessing]},
        {"blessing": [gate]}, {},
    )
    report = _output_artifact(EvaluationReport, str(root / "report"))
    inputs = {"evaluation": [_artifact_at(standard_artifacts.ModelEvaluation, run.inputs.evaluation_uri)],
              "blessing": [gate], "candidate_model": [candidate], "baseline_model": [baseline],
              "ingest_report": [_artifact_at(IngestReport, run.inputs.ingest_report_uri)],
              "production_evaluation": [evaluation], "production_model": [production]}
    report_executor.Executor().Do(inputs, {"report": [report]}, {})
    with open(os.path.join(report.uri, report_executor.REPORT_DATA_FILE)) as handle:
        data = json.load(handle)
    results = dict(run.results)
    results["ProductionModel"] = {"state": "COMPLETE", "outputs": {"model": [_mlmd_artifact(
        production.uri, **{name: production.get_string_custom_property(name)
                           for name in (contract.PRODUCTION_SOURCE_PROPERTY, contract.PRODUCTION_MODEL_PROPERTY)})]}}
    results["ProductionEvaluator"] = {"state": "COMPLETE", "outputs": {
        "evaluation": [_mlmd_artifact(evaluation.uri)],
        "blessing": [_mlmd_artifact(production_blessing.uri,
                                    blessed=production_blessing.get_int_custom_property("blessed"))]}}
    results["BlessingGate"] = {"state": "COMPLETE", "outputs": {
        "blessing": [_mlmd_artifact(gate.uri, blessed=gate.get_int_custom_property("blessed"))]}}
    results["Pusher"] = {"state": "COMPLETE", "outputs": {"pushed_model": [_mlmd_artifact(
        str(root / "pushed"), pushed=gate.get_int_custom_property("blessed"), pushed_destination="/serving/new")]}}
    return {"production": production, "gate": gate, "report": data, "results": results}


def _artifact_at(artifact_type, uri: str):
    artifact = artifact_type()
    artifact.uri = uri
    return artifact


def test_latest_pushed_model_is_the_newest_complete_numbered_version(tiny, tmp_path):
    serving = tmp_path / "serving"
    assert latest_pushed_model(str(serving)) is None  # nothing pushed yet: no folder at all
    serving.mkdir()
    assert latest_pushed_model(str(serving)) is None
    candidate_uri = tiny["run"].inputs.candidate_model_uri
    older = push(serving, 1700000000, candidate_uri)
    newer = push(serving, 1700000500, candidate_uri)
    push(serving, 1700000900, candidate_uri, complete=False)  # a push still copying, or a failed one
    (serving / "9999999999-backup").mkdir()  # not the Pusher's
    assert latest_pushed_model(str(serving)) == newer
    shutil.rmtree(newer)
    assert latest_pushed_model(str(serving)) == older


def test_without_a_pushed_model_the_supervised_baseline_is_the_bar(tiny):
    outcome = run_production_path(tiny, "first-push", str(tiny["root"] / "empty-serving"))
    production = outcome["production"]
    assert production.get_string_custom_property("source") == "supervised_baseline"
    assert os.path.exists(os.path.join(production.uri, "Format-Serving", "saved_model.pb"))
    decision = outcome["report"]["decision"]
    assert decision["production"]["production_model"] is None
    assert decision["production"]["production"] == decision["baseline"]  # the same model, evaluated again by TFMA
    assert decision["blessed"] and outcome["gate"].get_int_custom_property("blessed") == 1
    assert "nothing was in production yet" in decision["text"]


def test_a_candidate_no_better_than_production_is_not_blessed(tiny):
    serving = tiny["root"] / "serving-with-candidate"
    serving.mkdir()
    push(serving, 1700000000, tiny["run"].inputs.baseline_model_uri)
    in_production = push(serving, 1700000100, tiny["run"].inputs.candidate_model_uri)  # the same model again
    outcome = run_production_path(tiny, "same-as-production", str(serving))
    assert outcome["production"].get_string_custom_property("production_model") == in_production
    decision = outcome["report"]["decision"]
    assert decision["production"] == {"production_model": in_production, "candidate": decision["candidate"],
                                      "production": decision["candidate"], "difference": 0.0, "passed": False}
    assert not decision["blessed"] and outcome["gate"].get_int_custom_property("blessed") == 0
    assert decision["text"].startswith("NOT BLESSED, nothing pushed: ")
    assert f"vs the model in production ({in_production}) " in decision["text"]
    summary = summary_lib.build_summary(Config(evaluation=RULE), outcome["results"], None)
    assert summary["blessed"] is False and summary["pushed_model"] is None
    assert summary["production"] == decision["production"]
    assert summary["decision"] == decision["text"]
    assert collect_report_data(report_inputs(outcome["results"]))["decision"] == decision
    page = render_html(outcome["report"])
    assert f'id="production-accuracy" data-value="{decision["candidate"]!r}"' in page
    assert 'id="production-difference" class="failed"' in page and in_production in page


def test_a_candidate_better_than_production_is_blessed(tiny):
    serving = tiny["root"] / "serving-with-baseline"
    serving.mkdir()
    in_production = push(serving, 1700000000, tiny["run"].inputs.baseline_model_uri)
    outcome = run_production_path(tiny, "better-than-production", str(serving))
    decision = outcome["report"]["decision"]
    assert decision["production"]["production_model"] == in_production
    assert decision["production"]["difference"] > 0 and decision["production"]["passed"]
    assert decision["blessed"]
    assert outcome["report"]["thresholds"][0]["metric"] == contract.ACCURACY_METRIC


@pytest.mark.parametrize("blessed, expected", [((1, 1), True), ((1, 0), False), ((0, 1), False), ((), False)])
def test_the_gate_blesses_only_when_every_evaluator_did(tmp_path, blessed, expected):
    blessings = [blessing_artifact(str(tmp_path / f"b{index}"), value) for index, value in enumerate(blessed)]
    assert all_blessed(blessings) is expected


def test_compare_to_pushed_must_be_a_boolean(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("evaluation:\n  compare_to_pushed: maybe\n")
    with pytest.raises(ConfigError, match="evaluation.compare_to_pushed"):
        load_config(str(path))


def run_significance_gate(tiny, name: str, baseline_blessed: int, **comparison_options):
    """PairedComparison -> BlessingGate (baseline blessing + comparison, as with require_significant), for real."""
    root = tiny["root"] / name
    comparison = make_comparison(tiny["run"], str(root / "comparison"), require_significant=True,
                                 **comparison_options)
    gate = _output_artifact(standard_artifacts.ModelBlessing, str(root / "gate"))
    gate_executor.Executor().Do(
        {"model": [model_artifact(tiny["run"].inputs.candidate_model_uri, 1)],
         "baseline_blessing": [blessing_artifact(str(root / "baseline_blessing"), baseline_blessed)],
         "comparison": [comparison]},
        {"blessing": [gate]}, {},
    )
    return comparison, gate


@pytest.mark.parametrize("name, baseline_blessed, options, expected", [
    # The tiny candidate is right on 6 eval images the baseline misses, the baseline on 1: McNemar p = 0.125.
    ("significant", 1, {"significance_level": 0.2}, True),
    ("not-significant", 1, {"significance_level": 0.05}, False),
    ("significantly-worse", 1, {"significance_level": 0.2, "swap": True}, False),
    ("significant-but-evaluator-said-no", 0, {"significance_level": 0.2}, False),
])
def test_require_significant_blesses_only_a_significantly_better_candidate(tiny, name, baseline_blessed, options,
                                                                          expected):
    comparison, gate = run_significance_gate(tiny, name, baseline_blessed, **options)
    assert comparison.get_float_custom_property("p_value") == pytest.approx(0.125)
    assert gate.get_int_custom_property("blessed") == int(expected)
    assert os.path.exists(os.path.join(gate.uri, "BLESSED" if expected else "NOT_BLESSED"))


def test_blessing_gate_needs_a_second_condition():
    with pytest.raises(ValueError, match="needs a production_blessing or a comparison"):
        BlessingGate(model=None, baseline_blessing=None)
