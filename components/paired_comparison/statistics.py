"""How sure is the difference between two classifiers measured on the same eval images?

Plain functions (NumPy only) on paired per-example correctness: `candidate_correct[i]` and
`baseline_correct[i]` say whether each model classified eval example i correctly. Because both
models answer the same images, the pairs are what carry the uncertainty:

- the paired bootstrap: resample the eval examples with replacement, each example keeping both
  models' answers, and take the percentile interval of the resampled accuracy differences;
- the exact McNemar test: under "both models are equally accurate", each discordant pair (an image
  only one of the two got right) is the candidate's with probability 1/2, so the two-sided p-value
  is a binomial test with p = 1/2 on the discordant pairs (images both got right or both got wrong
  say nothing about which model is better).
"""

from typing import Any, Dict, Tuple

import numpy as np

DEFAULT_BOOTSTRAP_RESAMPLES = 2000


def _paired(candidate_correct, baseline_correct) -> Tuple[np.ndarray, np.ndarray]:
    candidate = np.asarray(candidate_correct, dtype=bool).reshape(-1)
    baseline = np.asarray(baseline_correct, dtype=bool).reshape(-1)
    if candidate.shape != baseline.shape:
        raise ValueError(f"paired correctness needs one answer per model per example, got {candidate.size} candidate "
                         f"and {baseline.size} baseline answers")
    if candidate.size == 0:
        raise ValueError("there are no eval examples to compare the models on")
    return candidate, baseline


def mcnemar_exact_p_value(candidate_only: int, baseline_only: int) -> float:
    """Two-sided exact McNemar p-value from the discordant pair counts.

    Args:
      candidate_only: examples only the candidate classified correctly.
      baseline_only: examples only the baseline classified correctly.

    Returns:
      P(a split at least as uneven as observed | each discordant pair is either model's with probability
      1/2), i.e. min(1, 2 * P(X <= min(candidate_only, baseline_only))) for X ~ Binomial(n, 1/2), n the
      discordant pairs (the binomial is symmetric, so this is scipy.stats.binomtest's two-sided value).
      1.0 when there is no discordant pair. Exact: integer arithmetic, one rounding at the end.
    """
    if candidate_only < 0 or baseline_only < 0:
        raise ValueError(f"discordant counts must be zero or more, got {candidate_only} and {baseline_only}")
    discordant = candidate_only + baseline_only
    smaller = min(candidate_only, baseline_only)
    if 2 * smaller == discordant:  # an even split (or none): nothing is more even
        return 1.0
    coefficient, tail = 1, 1  # C(n, 0); the sum of C(n, k) for k <= smaller
    for k in range(1, smaller + 1):
        coefficient = coefficient * (discordant - k + 1) // k
        tail += coefficient
    return min(1.0, 2 * tail / 2 ** discordant)


def paired_bootstrap_interval(candidate_correct, baseline_correct, *, confidence: float, resamples: int,
                              seed: int) -> Tuple[float, float]:
    """Percentile bootstrap interval of accuracy(candidate) - accuracy(baseline), pairs kept together.

    A resample of the n examples (with replacement) has the difference (examples only the candidate got
    right - examples only the baseline got right) / n, so only how many of each kind of pair it drew
    matters: those counts are drawn from the multinomial with the observed shares, which is exactly
    the distribution index resampling gives, in O(resamples) memory whatever the eval set's size.

    Args:
      candidate_correct: (n,) bool, the candidate's correctness per eval example.
      baseline_correct: (n,) bool, the baseline's, on the same examples in the same order.
      confidence: the interval's coverage, in (0, 1), e.g. 0.95.
      resamples: bootstrap resamples, at least 1.
      seed: seeds the resampling; the same inputs and seed give the same interval.

    Returns:
      (low, high): the (1 - confidence) / 2 and (1 + confidence) / 2 quantiles of the resampled differences.
    """
    candidate, baseline = _paired(candidate_correct, baseline_correct)
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if resamples < 1:
        raise ValueError(f"resamples must be at least 1, got {resamples}")
    size = candidate.size
    shares = np.array([np.sum(candidate & ~baseline), np.sum(~candidate & baseline), 0], dtype=float) / size
    shares[2] = max(0.0, 1.0 - shares[0] - shares[1])  # concordant pairs: no effect on the difference
    counts = np.random.default_rng(seed).multinomial(size, shares, size=resamples)
    differences = (counts[:, 0] - counts[:, 1]) / size
    low, high = np.quantile(differences, [(1.0 - confidence) / 2, (1.0 + confidence) / 2])
    return float(low), float(high)


def compare_correctness(candidate_correct, baseline_correct, *, significance_level: float,
                        resamples: int = DEFAULT_BOOTSTRAP_RESAMPLES, seed: int = 0) -> Dict[str, Any]:
    """Both accuracies, their difference, its paired bootstrap interval and the exact McNemar p-value.

    Args:
      candidate_correct: (n,) bool, the candidate's correctness per eval example.
      baseline_correct: (n,) bool, the baseline's, on the same examples in the same order.
      significance_level: the test's level, in (0, 1); the interval's confidence is 1 - significance_level.
      resamples: bootstrap resamples.
      seed: seeds the bootstrap.

    Returns:
      The JSON-ready record written as comparison.json; `significant` is p_value < significance_level
      (in either direction: `significantly_better` also needs a positive difference).
    """
    if not 0.0 < significance_level < 1.0:
        raise ValueError(f"significance_level must be in (0, 1), got {significance_level}")
    candidate, baseline = _paired(candidate_correct, baseline_correct)
    counts = {
        "both_correct": int(np.sum(candidate & baseline)),
        "candidate_only_correct": int(np.sum(candidate & ~baseline)),
        "baseline_only_correct": int(np.sum(~candidate & baseline)),
        "neither_correct": int(np.sum(~candidate & ~baseline)),
    }
    confidence = 1.0 - significance_level
    low, high = paired_bootstrap_interval(candidate, baseline, confidence=confidence, resamples=resamples, seed=seed)
    p_value = mcnemar_exact_p_value(counts["candidate_only_correct"], counts["baseline_only_correct"])
    candidate_accuracy, baseline_accuracy = float(candidate.mean()), float(baseline.mean())
    return {
        "candidate_accuracy": candidate_accuracy,
        "baseline_accuracy": baseline_accuracy,
        "difference": candidate_accuracy - baseline_accuracy,
        "ci_low": low,
        "ci_high": high,
        "confidence": confidence,
        "p_value": p_value,
        "significance_level": significance_level,
        "significant": p_value < significance_level,
        "eval_images": int(candidate.size),
        **counts,
        "test": "exact McNemar (two-sided binomial test, p = 1/2, on the discordant pairs)",
        "interval": "paired bootstrap percentile interval",
        "bootstrap_resamples": resamples,
        "seed": seed,
    }
