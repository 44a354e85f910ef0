"""PairedComparison: the uncertainty of the candidate-vs-baseline difference on the same eval images.

The statistics are checked against scipy and against synthetic paired data whose true difference is
known; the real executor runs on the tiny exported colour classifiers of tests/test_report.py.
"""

import json
import os

import numpy as np
import pytest
import scipy.stats
from test_report import _eval_split, _examples_artifact, _model_artifact, _output_artifact, _predictions

from components.artifacts import ModelComparison
from components.model_comparison import (
    COMPARISON_FILE,
    SUMMARY_FIELDS,
    read_comparison,
    significance_summary,
    significantly_better,
)
from components.paired_comparison import executor as comparison_executor
from components.paired_comparison.statistics import (
    compare_correctness,
    mcnemar_exact_p_value,
    paired_bootstrap_interval,
)


@pytest.mark.parametrize("candidate_only, baseline_only", [
    (0, 0), (5, 5), (0, 1), (0, 7), (7, 0), (3, 20), (20, 3), (12, 13), (100, 130), (1000, 1100), (0, 60)])
def test_mcnemar_is_scipys_exact_binomial_test_on_the_discordant_pairs(candidate_only, baseline_only):
    discordant = candidate_only + baseline_only
    expected = 1.0 if discordant == 0 else scipy.stats.binomtest(candidate_only, discordant, 0.5).pvalue
    assert mcnemar_exact_p_value(candidate_only, baseline_only) == pytest.approx(expected, rel=1e-9, abs=1e-300)


def synthetic_pairs(rng: np.random.Generator, size: int, candidate_accuracy: float, baseline_accuracy: float):
    """Paired correctness with known accuracies, correlated as two models on the same images are.

    Each image has a difficulty u ~ U(0, 1); a model is right when u < its accuracy, plus 10% of answers
    flipped independently. The true difference is then exactly candidate - baseline accuracy times 0.8.
    """
    difficulty = rng.uniform(size=size)

    def answers(accuracy):
        correct = difficulty < accuracy
        flipped = rng.uniform(size=size) < 0.1
        return np.where(flipped, ~correct, correct)

    return answers(candidate_accuracy), answers(baseline_accuracy), 0.8 * (candidate_accuracy - baseline_accuracy)


def test_bootstrap_interval_contains_the_true_difference_at_its_confidence():
    rng = np.random.default_rng(7)
    covered, datasets = 0, 200
    for index in range(datasets):
        candidate, baseline, true_difference = synthetic_pairs(rng, 400, 0.8, 0.7)
        low, high = paired_bootstrap_interval(candidate, baseline, confidence=0.95, resamples=2000, seed=index)
        covered += low <= true_difference <= high
    assert 0.90 <= covered / datasets <= 0.99  # a 95% interval, on 200 data sets
    candidate, baseline, true_difference = synthetic_pairs(np.random.default_rng(1), 5000, 0.8, 0.7)
    low, high = paired_bootstrap_interval(candidate, baseline, confidence=0.95, resamples=2000, seed=0)
    assert low <= true_difference <= high and high - low < 0.04


def test_bootstrap_is_seeded_and_repeatable():
    candidate, baseline, _ = synthetic_pairs(np.random.default_rng(3), 300, 0.75, 0.7)
    first = paired_bootstrap_interval(candidate, baseline, confidence=0.9, resamples=500, seed=11)
    assert paired_bootstrap_interval(candidate, baseline, confidence=0.9, resamples=500, seed=11) == first
    assert paired_bootstrap_interval(candidate, baseline, confidence=0.9, resamples=500, seed=12) != first
    assert compare_correctness(candidate, baseline, significance_level=0.1, resamples=500, seed=11) == \
        compare_correctness(candidate, baseline, significance_level=0.1, resamples=500, seed=11)


def test_bootstrap_counts_draw_the_same_distribution_as_resampling_the_examples():
    candidate, baseline, _ = synthetic_pairs(np.random.default_rng(5), 500, 0.8, 0.72)
    rng = np.random.default_rng(0)
    indices = rng.integers(0, candidate.size, size=(20000, candidate.size))
    by_index = candidate[indices].mean(axis=1) - baseline[indices].mean(axis=1)
    expected = np.quantile(by_index, [0.025, 0.975])
    low, high = paired_bootstrap_interval(candidate, baseline, confidence=0.95, resamples=20000, seed=1)
    assert low == pytest.approx(expected[0], abs=0.006) and high == pytest.approx(expected[1], abs=0.006)


def test_comparison_record_counts_the_pairs():
    candidate = np.array([1, 1, 1, 0, 0, 1, 1, 0], bool)
    baseline = np.array([1, 0, 0, 0, 1, 0, 1, 0], bool)
    record = compare_correctness(candidate, baseline, significance_level=0.05, resamples=100, seed=0)
    assert (record["both_correct"], record["candidate_only_correct"], record["baseline_only_correct"],
            record["neither_correct"]) == (2, 3, 1, 2)
    assert (record["candidate_accuracy"], record["baseline_accuracy"], record["eval_images"]) == (0.625, 0.375, 8)
    assert record["difference"] == 0.25 and record["confidence"] == 0.95
    assert record["p_value"] == pytest.approx(scipy.stats.binomtest(3, 4, 0.5).pvalue)
    assert record["significant"] is False and not significantly_better(record)
    assert record["ci_low"] <= record["difference"] <= record["ci_high"]
    json.dumps(record)  # JSON-ready


def test_significantly_better_needs_a_positive_significant_difference():
    base = {"difference": 0.1, "p_value": 0.01, "significance_level": 0.05}
    assert significantly_better(base)
    assert not significantly_better(dict(base, difference=-0.1))  # significantly worse
    assert not significantly_better(dict(base, p_value=0.05))  # p must be below the level
    assert not significantly_better(dict(base, difference=0.0, p_value=1.0))


@pytest.mark.parametrize("candidate, baseline, message", [
    ([], [], "no eval examples"), ([True], [True, False], "one answer per model per example")])
def test_bad_correctness_inputs_are_refused(candidate, baseline, message):
    with pytest.raises(ValueError, match=message):
        compare_correctness(candidate, baseline, significance_level=0.05)


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory):
    root = tmp_path_factory.mktemp("paired")
    images, labels = _eval_split(np.random.default_rng(0))
    examples = _examples_artifact(str(root / "examples"), {"eval": (images, labels)})
    models = {role: _model_artifact(str(root / role), role, index)
              for index, role in enumerate(("candidate", "baseline"), start=1)}
    return {"root": root, "examples": examples, "models": models, "images": images, "labels": labels}


def run_comparison(tiny_models, name: str, **exec_properties):
    comparison = _output_artifact(ModelComparison, str(tiny_models["root"] / name))
    properties = dict(significance_level=0.05, require_significant=0, bootstrap_resamples=2000, seed=0)
    properties.update(exec_properties)
    comparison_executor.Executor().Do(
        {"examples": [tiny_models["examples"]], "model": [tiny_models["models"]["candidate"]],
         "baseline_model": [tiny_models["models"]["baseline"]]},
        {"comparison": [comparison]}, properties,
    )
    return comparison


def test_executor_compares_the_exported_models_on_every_eval_example(tiny_models):
    comparison = run_comparison(tiny_models, "comparison", require_significant=1)
    record = read_comparison(comparison.uri)
    labels = np.array(tiny_models["labels"])
    correct = {role: _predictions(model.uri, tiny_models["images"]).argmax(axis=1) == labels
               for role, model in tiny_models["models"].items()}  # through the other signature
    expected = compare_correctness(correct["candidate"], correct["baseline"], significance_level=0.05)
    assert {key: record[key] for key in expected} == expected
    assert record["eval_images"] == len(labels) and record["required"] is True
    assert record["candidate_accuracy"] > record["baseline_accuracy"]
    assert comparison.get_float_custom_property("p_value") == record["p_value"]
    assert comparison.get_float_custom_property("difference") == record["difference"]
    assert comparison.get_int_custom_property("significant") == int(record["significant"])
    assert os.path.exists(os.path.join(comparison.uri, COMPARISON_FILE))
    assert set(significance_summary(comparison.uri)) == set(SUMMARY_FIELDS)
    assert significance_summary(None) is None


def test_executor_is_repeatable_and_uses_the_configured_level(tiny_models):
    first = read_comparison(run_comparison(tiny_models, "first", significance_level=0.2, seed=3).uri)
    again = read_comparison(run_comparison(tiny_models, "again", significance_level=0.2, seed=3).uri)
    assert first == again
    assert first["confidence"] == pytest.approx(0.8) and first["significance_level"] == 0.2


def test_executor_needs_an_eval_split(tiny_models, tmp_path):
    examples = _examples_artifact(str(tmp_path / "examples"), {"train": ([], [])})
    examples.split_names = '["train"]'
    with pytest.raises(ValueError, match="no 'eval' split"):
        comparison_executor.Executor().Do(
            {"examples": [examples], "model": [tiny_models["models"]["candidate"]],
             "baseline_model": [tiny_models["models"]["baseline"]]},
            {"comparison": [_output_artifact(ModelComparison, str(tmp_path / "out"))]},
            dict(significance_level=0.05, require_significant=0, bootstrap_resamples=10, seed=0),
        )
