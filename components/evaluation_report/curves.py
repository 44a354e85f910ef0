"""Which epoch each value of a Trainer's history belongs to: the pretraining checks and the training phases.

A history maps `"<phase>/<metric>"` to one value per epoch of that phase, in the order the phases ran,
except the kNN accuracy of pretraining: KnnMonitor (trainer/monitors.py) adds `knn_accuracy` to the
epoch's logs only every `training.monitor_every_epochs` epochs (epochs m, 2m, 3m, ...), and the history
(Keras' and EpochBackup's alike) appends a key's value only for the epochs that logged it, so
`pretrain/knn_accuracy` has one value per check, neither repeated nor padded.
"""

import dataclasses
from typing import Dict, List, Optional, Sequence, Tuple

from trainer.contract import (
    BASELINE_ROLE,
    CANDIDATE_ROLE,
    DISTILL_PHASE,
    FINETUNE_PHASE,
    FIXMATCH_PHASE,
    LINEAR_PHASE,
    MATCHED_PHASE,
    PRETRAIN_PHASE,
    SUPERVISED_PHASE,
    history_key,
)

KNN_KEY = history_key(PRETRAIN_PHASE, "knn_accuracy")
PROBE_KEY = history_key(PRETRAIN_PHASE, "probe_accuracy")
# (history prefix, what the phase trains), in the order each Trainer runs them (trainer/finetune.py,
# trainer/fixmatch.py, trainer/distill.py).
TRAINING_PHASES = {
    CANDIDATE_ROLE: ((LINEAR_PHASE, "linear head"), (FINETUNE_PHASE, "whole network"), (FIXMATCH_PHASE, "FixMatch"),
                     (DISTILL_PHASE, "distillation")),
    BASELINE_ROLE: ((SUPERVISED_PHASE, "whole network"),
                    (MATCHED_PHASE, "as many labeled batches as FixMatch/distillation")),
}


@dataclasses.dataclass(frozen=True)
class Phase:
    """A training phase's epochs, counted from the start of the role's classifier training (1-based)."""

    name: str
    label: str
    first_epoch: int
    last_epoch: int


@dataclasses.dataclass(frozen=True)
class KnnEpochs:
    """The epochs at which the kNN accuracy was measured, and how they are known.

    Attributes:
      epochs: one epoch per kNN value; None when the history cannot tell (see `explanation`).
      every: the spacing of the checks (training.monitor_every_epochs), when known.
      explanation: where the epochs come from, or why they are unknown, in words.
    """

    epochs: Optional[List[int]]
    every: Optional[int]
    explanation: str


def phase_epochs(history: Dict[str, Sequence[float]], phase: str) -> int:
    """The number of epochs `phase` ran: its longest curve (the kNN accuracy may have fewer values)."""
    return max((len(values) for key, values in history.items() if key.startswith(history_key(phase, ""))), default=0)


def training_phases(history: Dict[str, Sequence[float]], role: str) -> List[Phase]:
    """The phases of `role`'s classifier training that ran (at least one epoch), one after the other."""
    phases, first = [], 1
    for name, label in TRAINING_PHASES[role]:
        epochs = phase_epochs(history, name)
        if epochs:
            phases.append(Phase(name, label, first, first + epochs - 1))
            first += epochs
    return phases


def phase_curve(history: Dict[str, Sequence[float]], phases: Sequence[Phase],
                metric_of_phase: Dict[str, str]) -> Tuple[List[int], List[float]]:
    """The epochs and values of one metric over consecutive phases.

    Args:
      history: the role's history.
      phases: training_phases(history, role).
      metric_of_phase: phase name -> the metric that phase records for this curve (e.g. the distillation
        phase's cross-entropy on labels is `labeled_loss`, the fine-tuning phases' is `loss`); a phase
        not named here, or without that metric, leaves a gap.

    Returns:
      (epochs, values) of equal length.
    """
    epochs: List[int] = []
    values: List[float] = []
    for phase in phases:
        metric = metric_of_phase.get(phase.name)
        recorded = list(history.get(history_key(phase.name, metric), [])) if metric else []
        epochs += list(range(phase.first_epoch, phase.first_epoch + len(recorded)))
        values += recorded
    return epochs, values


def knn_check_epochs(checks: int, pretrain_epochs: int, every: Optional[int] = None) -> KnnEpochs:
    """The epochs of `checks` kNN values in `pretrain_epochs` epochs of pretraining.

    The checks were at epochs m, 2m, ..., so there are pretrain_epochs // m of them. With the setting m
    (`every`) the epochs follow from it; without it, from the counts when exactly one spacing gives that
    many checks (always when there is a check every epoch), else they are unknown: 2 checks in 20 epochs
    fit every 7, 8, 9 or 10 epochs.
    """
    if checks == 0:
        return KnnEpochs([], every, "no kNN check was recorded")
    if every is not None and every > 0 and pretrain_epochs // every == checks:
        return KnnEpochs([every * (index + 1) for index in range(checks)], every,
                         f"measured every {every} epoch{'s' if every > 1 else ''} "
                         "(training.monitor_every_epochs in the Trainer's settings)")
    spacings = [spacing for spacing in range(1, pretrain_epochs + 1) if pretrain_epochs // spacing == checks]
    if len(spacings) == 1:
        (spacing,) = spacings
        return KnnEpochs([spacing * (index + 1) for index in range(checks)], spacing,
                         f"measured every {spacing} epoch{'s' if spacing > 1 else ''}: the only "
                         f"training.monitor_every_epochs that gives {checks} checks in {pretrain_epochs} epochs")
    stated = f"; the recorded setting, every {every} epochs, would give {pretrain_epochs // every}" if every else ""
    fits = ", ".join(str(spacing) for spacing in spacings) or "no spacing"
    return KnnEpochs(None, None,
                     f"{checks} kNN checks in {pretrain_epochs} epochs fit training.monitor_every_epochs = {fits}"
                     f"{stated}, so the epoch of each check is unknown; they are drawn by check number")
