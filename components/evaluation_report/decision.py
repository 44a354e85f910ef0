"""The one sentence that states a run's decision and why: used by the report and by summary.json."""

from typing import Any, Dict, Optional


def decision_sentence(
    *,
    method: str,
    candidate_accuracy: float,
    baseline_accuracy: float,
    min_accuracy: float,
    margin: float,
    blessed: bool,
    pushed_to: Optional[str],
    production: Optional[Dict[str, Any]] = None,
    significance: Optional[Dict[str, Any]] = None,
) -> str:
    """What was decided, with both accuracies, their difference, its uncertainty and the rule.

    Args:
      method: the candidate's self-supervised method (simclr, simsiam, byol).
      candidate_accuracy: the candidate's accuracy on the eval split.
      baseline_accuracy: the supervised baseline's accuracy on the eval split.
      min_accuracy: the accuracy the candidate needs at least.
      margin: the difference over the baseline the candidate needs to exceed.
      blessed: whether the Evaluator blessed the candidate.
      pushed_to: where the Pusher copied the candidate, None when it was not pushed.
      production: with evaluation.compare_to_pushed, the second comparison (production_comparison()).
      significance: PairedComparison's result (model_comparison.significance_summary()), or
        None when the run has none.

    Returns:
      "BLESSED ...: candidate (simclr) accuracy 0.8100 vs supervised baseline 0.7500 (...)." or
      "NOT BLESSED, nothing pushed: ...".
    """
    required = f"more than {margin:+.4f} and at least {min_accuracy:.4f} overall"
    if significance is not None and significance["required"]:
        required = (f"more than {margin:+.4f}, at least {min_accuracy:.4f} overall and a McNemar p-value below "
                    f"{significance['significance_level']:g}")
    comparison = (
        f"candidate ({method}) accuracy {candidate_accuracy:.4f} vs supervised baseline {baseline_accuracy:.4f} "
        f"(difference {candidate_accuracy - baseline_accuracy:+.4f}; required: {required})"
    )
    if significance is not None:
        comparison += "; " + significance_clause(significance)
    if production is not None:
        comparison += "; " + production_clause(production)
    if blessed:
        where = f" and pushed to {pushed_to}" if pushed_to else ""
        return f"BLESSED{where}: {comparison}."
    return f"NOT BLESSED, nothing pushed: {comparison}."


def p_value_text(p_value: float) -> str:
    return "p < 0.0001" if p_value < 1e-4 else f"p = {p_value:.4f}"


def significance_clause(significance: Dict[str, Any]) -> str:
    """The uncertainty of the difference, e.g. "95% interval of the difference [+0.0312, +0.1405] (paired
    bootstrap), McNemar p = 0.0021 on 300 eval images: significant at 0.05"."""
    verdict = "significant" if significance["significant"] else "not significant"
    return (f"{significance['confidence']:.0%} interval of the difference [{significance['ci_low']:+.4f}, "
            f"{significance['ci_high']:+.4f}] (paired bootstrap), McNemar {p_value_text(significance['p_value'])} "
            f"on {significance['eval_images']} eval images: {verdict} at {significance['significance_level']:g}")


def production_comparison(*, candidate_accuracy: float, production_accuracy: float,
                          production_model: Optional[str]) -> Dict[str, Any]:
    """The comparison with the model in production; production_model None: nothing was pushed yet, and
    the accuracies are the candidate's and the supervised baseline's again."""
    return {
        "production_model": production_model,
        "candidate": candidate_accuracy,
        "production": production_accuracy,
        "difference": candidate_accuracy - production_accuracy,
    }


def production_clause(production: Dict[str, Any]) -> str:
    if production["production_model"] is None:
        return "nothing was in production yet"
    return (f"vs the model in production ({production['production_model']}) {production['production']:.4f} "
            f"(difference {production['difference']:+.4f}; required: more than +0.0000)")
