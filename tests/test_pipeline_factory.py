"""The pipeline factory: components, wiring, and what reaches the Trainers' cache key."""

import json
import shutil

import pytest

from pipeline import pipeline as pipeline_module
from pipeline.config import Config, DataConfig, EvaluationConfig
from pipeline.pipeline import COMPONENT_IDS, component_ids, create_pipeline, trainer_code_fingerprint
from trainer import contract
from trainer.hparams import ConfigError, TrainingConfig
from trainer.run import training_config_from_custom_config


def build(tmp_path, **config_sections):
    config = Config(data=DataConfig(path=str(tmp_path / "data")), **config_sections)
    return create_pipeline(config=config, pipeline_root=str(tmp_path / "root"), serving_dir=str(tmp_path / "serving"))


def test_components_and_order(tmp_path):
    pipeline = build(tmp_path)
    ids = [component.id for component in pipeline.components]
    assert sorted(ids) == sorted(COMPONENT_IDS)
    assert (ids.index("AnomalyGate") < ids.index("Pretrainer") < ids.index("CandidateTrainer")
            < ids.index("Evaluator") < ids.index("Pusher"))
    assert "BlessingGate" not in ids  # the Pusher takes the Evaluator's blessing


def test_every_component_id_is_the_contracts_and_the_ids_are_unchanged(tmp_path):
    built = build(tmp_path, evaluation=EvaluationConfig(compare_to_pushed=True))
    contract_ids = {value for name, value in vars(contract).items() if name.isupper() and isinstance(value, str)}
    assert {component.id for component in built.components} <= contract_ids
    # summary.json, report.html and existing MLMD stores name the components so: the contract keeps the ids
    assert COMPONENT_IDS == ("ImageExampleGen", "StatisticsGen", "SchemaGen", "ExampleValidator", "AnomalyGate",
                             "Pretrainer", "CandidateTrainer", "BaselineTrainer", "Evaluator", "PairedComparison",
                             "Pusher", "EvaluationReportGen")
    assert {component.id for component in built.components} - set(COMPONENT_IDS) == {
        "ProductionModel", "ProductionEvaluator", "BlessingGate"}


def test_the_paired_comparison_always_runs_on_both_trainers_models_and_feeds_the_report(tmp_path):
    components = {component.id: component for component in build(tmp_path).components}
    comparison = components["PairedComparison"]
    assert {key: channel.producer_component_id for key, channel in comparison.inputs.items()} == {
        "examples": "ImageExampleGen", "model": "CandidateTrainer", "baseline_model": "BaselineTrainer"}
    assert comparison.exec_properties["significance_level"] == 0.05
    assert comparison.exec_properties["require_significant"] == 0
    assert comparison.exec_properties["bootstrap_resamples"] == 2000
    assert components["EvaluationReportGen"].inputs["comparison"].producer_component_id == "PairedComparison"
    assert components["Pusher"].inputs["model_blessing"].producer_component_id == "Evaluator"


def test_require_significant_puts_a_gate_on_the_comparison_before_the_pusher(tmp_path):
    evaluation = EvaluationConfig(require_significant=True, significance_level=0.01)
    components = {component.id: component for component in build(tmp_path, evaluation=evaluation).components}
    assert sorted(components) == sorted(component_ids(Config(evaluation=evaluation)))
    assert set(components) - set(COMPONENT_IDS) == {"BlessingGate"}
    assert components["PairedComparison"].exec_properties["significance_level"] == 0.01
    assert components["PairedComparison"].exec_properties["require_significant"] == 1
    gate_inputs = components["BlessingGate"].inputs
    assert {key: channel.producer_component_id for key, channel in gate_inputs.items()} == {
        "model": "CandidateTrainer", "baseline_blessing": "Evaluator", "comparison": "PairedComparison"}
    for consumer, key in (("Pusher", "model_blessing"), ("EvaluationReportGen", "blessing")):
        assert components[consumer].inputs[key].producer_component_id == "BlessingGate"


def test_require_significant_with_compare_to_pushed_gates_on_all_three(tmp_path):
    evaluation = EvaluationConfig(require_significant=True, compare_to_pushed=True)
    components = {component.id: component for component in build(tmp_path, evaluation=evaluation).components}
    assert sorted(components) == sorted(component_ids(Config(evaluation=evaluation)))
    gate_inputs = components["BlessingGate"].inputs
    assert {key: channel.producer_component_id for key, channel in gate_inputs.items()} == {
        "model": "CandidateTrainer", "baseline_blessing": "Evaluator", "production_blessing": "ProductionEvaluator",
        "comparison": "PairedComparison"}


def test_compare_to_pushed_puts_a_second_evaluation_and_a_gate_before_the_pusher(tmp_path):
    evaluation = EvaluationConfig(compare_to_pushed=True)
    pipeline = build(tmp_path, evaluation=evaluation)
    components = {component.id: component for component in pipeline.components}
    assert sorted(components) == sorted(component_ids(Config(evaluation=evaluation)))
    assert set(components) - set(COMPONENT_IDS) == {"ProductionModel", "ProductionEvaluator", "BlessingGate"}
    assert "comparison" not in components["BlessingGate"].inputs  # significance is not required
    assert components["ProductionModel"].exec_properties["serving_dir"] == str(tmp_path / "serving")
    assert components["ProductionEvaluator"].inputs["baseline_model"].producer_component_id == "ProductionModel"
    assert components["ProductionEvaluator"].inputs["model"].producer_component_id == "CandidateTrainer"
    gate_inputs = components["BlessingGate"].inputs
    assert (gate_inputs["baseline_blessing"].producer_component_id,
            gate_inputs["production_blessing"].producer_component_id) == ("Evaluator", "ProductionEvaluator")
    for consumer in ("Pusher", "EvaluationReportGen"):
        assert components[consumer].inputs["model_blessing" if consumer == "Pusher" else "blessing"] \
            .producer_component_id == "BlessingGate"


def test_trainers_get_role_training_config_and_code_fingerprint(tmp_path):
    components = {component.id: component for component in build(tmp_path).components}
    for component_id, role in (("CandidateTrainer", "candidate"), ("BaselineTrainer", "baseline")):
        custom_config = components[component_id].exec_properties["custom_config"]
        assert '"role": "%s"' % role in custom_config
        assert trainer_code_fingerprint() in custom_config
        assert ('"method": "simclr"' in custom_config) == (role == "candidate")
        # Every key the pipeline puts there is one the Trainer accepts (an unknown one is an error).
        assert training_config_from_custom_config(json.loads(custom_config)) == Config().training
    assert components["CandidateTrainer"].inputs["schema"].producer_component_id == "AnomalyGate"


def test_candidate_fine_tunes_the_pretrainers_encoder_and_the_baseline_starts_from_scratch(tmp_path):
    components = {component.id: component for component in build(tmp_path).components}
    assert components["CandidateTrainer"].inputs["base_model"].producer_component_id == "Pretrainer"
    assert "base_model" not in components["BaselineTrainer"].inputs
    assert components["Pretrainer"].inputs["examples"].producer_component_id == "ImageExampleGen"
    assert components["EvaluationReportGen"].inputs["pretrained_model"].producer_component_id == "Pretrainer"


def test_only_pretraining_settings_are_in_the_pretrainers_cache_key(tmp_path):
    """A fine-tuning or label-budget change leaves the Pretrainer's custom_config (its cache key) as it was."""
    def pretrainer_config(**training):
        pipeline = build(tmp_path, training=TrainingConfig(**training))
        return {component.id: component for component in pipeline.components}["Pretrainer"].exec_properties[
            "custom_config"]

    default = pretrainer_config()
    assert '"role": "pretrainer"' in default and trainer_code_fingerprint() in default
    assert training_config_from_custom_config(json.loads(default)) == TrainingConfig()
    for finetuning_change in (dict(finetune_learning_rate=0.01), dict(labels_per_class=5), dict(linear_epochs=3),
                              dict(distill_epochs=2), dict(finetune_augment={"flip_probability": 0.0})):
        assert pretrainer_config(**finetuning_change) == default, finetuning_change
    for pretraining_change in (dict(method="byol"), dict(encoder_width=64), dict(pretrain_epochs=3),
                               dict(temperature=0.2), dict(init_encoder="/models/encoder")):
        assert pretrainer_config(**pretraining_change) != default, pretraining_change


def test_the_baseline_stays_cached_when_only_the_candidate_changes(tmp_path):
    def baseline_config(**training):
        pipeline = build(tmp_path, training=TrainingConfig(**training))
        return {component.id: component for component in pipeline.components}["BaselineTrainer"].exec_properties[
            "custom_config"]

    default = baseline_config()
    for candidate_change in (dict(method="byol"), dict(pretrain_epochs=3), dict(fixmatch_threshold=0.9),
                             dict(finetune_learning_rate=0.01), dict(temperature=0.5)):
        assert baseline_config(**candidate_change) == default, candidate_change
    # The baseline trains on as many labeled batches as the candidate's FixMatch and distillation stages.
    for shared_change in (dict(encoder_width=64), dict(labels_per_class=5), dict(finetune_epochs=3),
                          dict(baseline_learning_rate=0.01), dict(finetune_augment={"flip_probability": 0.0}),
                          dict(fixmatch_epochs=0), dict(distill_epochs=2), dict(batch_size=128)):
        assert baseline_config(**shared_change) != default, shared_change


def test_trainer_code_fingerprint_changes_with_the_trainer_source(tmp_path, monkeypatch):
    copy = tmp_path / "trainer"
    shutil.copytree(pipeline_module.importlib.util.find_spec("trainer").submodule_search_locations[0], copy,
                    ignore=shutil.ignore_patterns("__pycache__"))

    class FakeSpec:
        submodule_search_locations = [str(copy)]

    monkeypatch.setattr(pipeline_module.importlib.util, "find_spec", lambda name: FakeSpec())
    original = trainer_code_fingerprint()
    with open(copy / "losses.py", "a") as handle:
        handle.write("\n# a change\n")
    assert trainer_code_fingerprint() != original


def test_pipeline_without_thresholds_cannot_be_built(tmp_path, monkeypatch):
    import tensorflow_model_analysis as tfma

    from pipeline import evaluation

    def no_thresholds(_):
        eval_config = tfma.EvalConfig(metrics_specs=[tfma.MetricsSpec(metrics=[
            tfma.MetricConfig(class_name="SparseCategoricalAccuracy")])])
        evaluation.require_thresholds(eval_config)
        return eval_config

    monkeypatch.setattr(pipeline_module, "build_eval_config", no_thresholds)
    with pytest.raises(ValueError, match="no metric threshold"):
        build(tmp_path)


def test_the_settings_of_another_pipelines_trainer_are_refused_naming_each(tmp_path):
    """training.image_feature, label_feature, class_names and unlabeled_splits are for selfsup's Trainer module
    in another pipeline (docs/own_pipeline.md); ImageExampleGen fixes them here."""
    with pytest.raises(ConfigError) as raised:
        build(tmp_path, training=TrainingConfig(label_feature="class", unlabeled_splits=[]))
    lines = str(raised.value).splitlines()
    assert [line.split("'")[1] for line in lines] == ["training.label_feature", "training.unlabeled_splits"]
    assert all("docs/own_pipeline.md" in line for line in lines)
