"""Renders the report data (report_data.py) as one self-contained HTML page, from Jinja2 templates.

The page is templates/report.html.j2 (autoescaped: every value from the data is escaped). Charts are
SVG documents embedded as data: URIs and example images base64 PNGs; the style sheet is inline; there
is no script and no network resource, so the file reads the same when copied anywhere or opened offline.
This module turns the data into what the template shows (rows, charts, notes); the template only lays
them out.
"""

import base64
import functools
import json
import re
from typing import Any, Dict, List, NamedTuple, Optional, Tuple

import jinja2

from components.evaluation_report.curves import (
    KNN_KEY,
    PROBE_KEY,
    knn_check_epochs,
    phase_curve,
    phase_epochs,
    training_phases,
)
from components.evaluation_report.decision import p_value_text
from components.evaluation_report.svg_chart import Band, Series, line_chart
from components.model_comparison import significantly_better
from trainer.contract import (
    ACCURACY_METRIC,
    BASELINE_ROLE,
    CANDIDATE_ROLE,
    DISTILL_PHASE,
    FIXMATCH_PHASE,
    PRETRAIN_PHASE,
    PRETRAINER_ROLE,
    SEMI_SUPERVISED_PHASES,
    history_key,
)

TEMPLATE = "report.html.j2"
ROLES = (CANDIDATE_ROLE, BASELINE_ROLE)
ROLE_COLORS = {CANDIDATE_ROLE: "#1f77b4", BASELINE_ROLE: "#d95f02"}
PROBE_COLOR = "#7570b3"
PRETRAIN_LOSS_KEY = history_key(PRETRAIN_PHASE, "loss")
# history key -> (name, what it shows) of the method's collapse signal (trainer/methods.py).
COLLAPSE_SIGNALS = {
    history_key(PRETRAIN_PHASE, "output_std"): (
        "output std", "SimSiam/BYOL: the spread of the normalized outputs; near 0 means the representation "
        "collapsed to a constant"),
    history_key(PRETRAIN_PHASE, "contrastive_accuracy"): (
        "contrastive accuracy", "SimCLR: how often an image's other view is its most similar one in the batch; "
        "stuck near chance means no learning"),
}
# The fine-tuning charts' metric in each phase: the semi-supervised phases' cross-entropy on the labeled batch
# is `labeled_loss` (their `loss` adds the soft-target or pseudo-label term); every phase's eval metrics are `val_*`.
FINETUNE_CURVES = {
    "accuracy": {"train": "accuracy", "validation": "val_accuracy"},
    "loss": {"train": "loss", "validation": "val_loss"},
}
SEMI_SUPERVISED_TRAIN_METRIC = {"loss": "labeled_loss"}
LOSS_COLORS = ("#222222", "#1b9e77", "#e7298a")  # the total (dashed), the unlabeled images' term, the labels' term


class StageCharts(NamedTuple):
    """The charts of a semi-supervised stage (trainer/fixmatch.py, trainer/distill.py)."""

    epoch: str  # what the stage's epochs are called
    loss_title: str
    unlabeled_loss: Tuple[str, str]  # (metric, label) of its loss term on the unlabeled images
    signal: Tuple[str, str, str, str]  # its per-epoch signal on the unlabeled images: metric, title, label, y label


STAGE_CHARTS = {
    FIXMATCH_PHASE: StageCharts("FixMatch epoch", "FixMatch loss", ("unlabeled_loss", "pseudo-labels (strong views)"),
                                ("confident_fraction", "FixMatch: unlabeled images with a pseudo-label",
                                 "share above the confidence threshold", "share")),
    DISTILL_PHASE: StageCharts("distillation epoch", "Distillation loss",
                               ("distillation_loss", "soft targets (teacher)"),
                               ("teacher_agreement", "Distillation: agreement with the teacher",
                                "student's class = teacher's (unlabeled images)", "agreement")),
}
METRIC_LABELS = {ACCURACY_METRIC: "accuracy", "example_count": "examples"}
COUNT_METRICS = {"example_count"}
TOP_K_METRIC = re.compile(r"^top_(\d+)_accuracy$")
SKIPPED_SHOWN = 100
LISTED_SHOWN = 20  # eval copies, ignored files and links listed by name


def render_html(data: Dict[str, Any]) -> str:
    """The whole report page for a report data dict."""
    histories = data["histories"]
    settings = data.get("settings") or {}
    context = {
        "data": data,
        "decision": data["decision"],
        "key_numbers": _key_numbers(data["decision"]),
        "overall": _overall_metrics(data),
        "per_class": _per_class_rows(data),
        "confusion": _confusion_tables(data),
        "misclassified": _misclassified(data),
        "pretraining": _pretraining(histories[CANDIDATE_ROLE], settings),
        "augmented_views": _augmented_views(data.get("augmented_views")),
        "finetuning": _finetuning(histories),
        "data_view": _data_view(data),
        "settings": _settings_rows(settings),
        "versions": data.get("versions") or {},
        "sources": [(name, path) for name, path in data["sources"].items() if path],
    }
    return template_environment().get_template(TEMPLATE).render(context)


@functools.lru_cache(maxsize=1)
def template_environment() -> jinja2.Environment:
    """The Jinja2 environment of the report's templates (package data of this package), autoescaping."""
    environment = jinja2.Environment(
        loader=jinja2.PackageLoader("components.evaluation_report", "templates"),
        autoescape=True,  # the template ends in .j2, which select_autoescape would not recognise
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    environment.filters.update(number=_number, signed=_signed, pyrepr=repr, metric_label=_metric_label,
                               size=_size, p_value=p_value_text)
    return environment


def _number(value: Optional[float], digits: int = 4) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _signed(value: float) -> str:
    return f"{value:+.4f}"


def _metric_label(name: str) -> str:
    return METRIC_LABELS.get(name, name.replace("_", " "))


def _metric_value(name: str, value: Optional[float]) -> str:
    return f"{value:g}" if name in COUNT_METRICS and value is not None else _number(value)


def _size(byte_count: Optional[int]) -> str:
    if byte_count is None:
        return "n/a"
    for unit, factor in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if byte_count >= factor:
            return f"{byte_count / factor:.1f} {unit} ({byte_count:,} bytes)"
    return f"{byte_count} bytes"


def _key_numbers(decision: Dict[str, Any]) -> List[Dict[str, Any]]:
    """The rows of the decision's table: {name, id, value (shown), and data attributes / class}."""
    metric = _metric_label(decision["metric"])
    rows = [
        {"name": f"candidate {metric} ({decision['method']})", "id": "candidate-accuracy",
         "data": {"value": repr(decision["candidate"])}, "value": _number(decision["candidate"])},
        {"name": f"supervised baseline {metric}", "id": "baseline-accuracy",
         "data": {"value": repr(decision["baseline"])}, "value": _number(decision["baseline"])},
        {"name": "difference (candidate - baseline, TFMA)", "id": "accuracy-difference",
         "data": {"value": repr(decision["difference"])}, "value": _signed(decision["difference"])},
    ]
    significance = decision.get("significance")
    if significance is not None:
        verdict = "significant" if significance["significant"] else "not significant"
        required = ", required" if significance["required"] else ""
        result = None
        if significance["required"]:  # evaluation.require_significant: part of the blessing rule
            result = "passed" if significantly_better(significance) else "failed"
        rows += [
            {"name": f"{significance['confidence']:.0%} interval of the difference (paired bootstrap)",
             "id": "difference-interval",
             "data": {"low": repr(significance["ci_low"]), "high": repr(significance["ci_high"])},
             "value": f"[{significance['ci_low']:+.4f}, {significance['ci_high']:+.4f}]"},
            {"name": f"McNemar exact p-value ({significance['eval_images']} eval images; significant below "
                     f"{significance['significance_level']:g}{required})",
             "id": "p-value", "class": result, "data": {"value": repr(significance["p_value"])},
             "value": f"{p_value_text(significance['p_value'])} ({verdict})"},
        ]
    production = decision.get("production")
    if production is not None:
        result = "passed" if production["passed"] else "failed"
        if production["production_model"] is None:
            rows.append({"name": "model in production", "id": "production-model", "value": f"none yet ({result})"})
        else:
            rows += [
                {"name": f"{metric} of the model in production", "code": production["production_model"],
                 "id": "production-accuracy", "data": {"value": repr(production["production"])},
                 "value": _number(production["production"])},
                {"name": "difference (candidate - production, TFMA; must be above 0)", "id": "production-difference",
                 "class": result, "data": {"value": repr(production["difference"])},
                 "value": f"{_signed(production['difference'])} ({result})"},
            ]
    return [dict({"code": None, "class": None, "data": {}}, **row) for row in rows]


def top_k(metric: str) -> Optional[int]:
    """k of a `top_<k>_accuracy` metric, else None."""
    match = TOP_K_METRIC.match(metric)
    return int(match.group(1)) if match else None


def _overall_metrics(data: Dict[str, Any]) -> Dict[str, Any]:
    """Both models' TFMA metrics; a top-k accuracy with k >= the number of classes is left out (it is 1)."""
    models = data["models"]
    classes = len(data["class_names"])
    names = sorted(set(models["candidate"]["metrics"]) | set(models["baseline"]["metrics"]))
    left_out = [name for name in names if top_k(name) is not None and top_k(name) >= classes]
    rows = [
        {"name": _metric_label(name), "cells": [_metric_value(name, models[role]["metrics"].get(name))
                                                  for role in ROLES]}
        for name in names if name not in left_out
    ]
    rows.append({"name": "expected calibration error (top-1 confidence)",
                 "cells": [_number(models[role]["expected_calibration_error"]) for role in ROLES]})
    return {"rows": rows, "left_out": [_metric_label(name) for name in left_out], "classes": classes}


def _per_class_rows(data: Dict[str, Any]) -> Optional[Dict[str, Any]]:
    models = data["models"]
    if any(models[role]["per_class"] is None for role in ROLES):
        return None
    rows = []
    for class_id, class_name in enumerate(data["class_names"]):
        candidate, baseline = (models[role]["per_class"][class_id] for role in ROLES)
        rows.append({"name": class_name, "support": f"{candidate['support']:g}",
                     "cells": [_number(row[metric]) for row in (candidate, baseline)
                                for metric in ("precision", "recall")]})
    return {"rows": rows, "sources": ", ".join(sorted({models[role]["per_class_source"] for role in ROLES}))}


def _confusion_tables(data: Dict[str, Any]) -> Optional[List[Dict[str, Any]]]:
    """Per role: rows of {name, cells: [{count, share, dark}]}; None when TFMA computed no matrix."""
    if any(data["models"][role]["confusion_matrix"] is None for role in ROLES):
        return None
    tables = []
    for role in ROLES:
        rows = []
        for class_name, counts in zip(data["class_names"], data["models"][role]["confusion_matrix"]):
            total = sum(counts)
            cells = [{"count": f"{count:g}", "share": f"{count / total if total else 0.0:.2f}",
                      "dark": total > 0 and count / total > 0.6} for count in counts]
            rows.append({"name": class_name, "cells": cells})
        tables.append({"role": role, "rows": rows})
    return tables


def _chart(title: str, series: List[Series], x_label: str, y_label: str, bands=()) -> Dict[str, str]:
    svg = line_chart(title, series, x_label, y_label, bands=bands)
    return {"title": title, "src": "data:image/svg+xml;base64," + base64.b64encode(svg.encode("utf-8")).decode("ascii")}


def _monitor_every(settings: Dict[str, Any]) -> Optional[int]:
    """training.monitor_every_epochs from the Trainer settings that ran the pretraining, when recorded."""
    for role in (PRETRAINER_ROLE, CANDIDATE_ROLE):
        value = (settings.get(role) or {}).get("monitor_every_epochs")
        if isinstance(value, int):
            return value
    return None


def _pretraining(history: Dict[str, List[float]], settings: Dict[str, Any]) -> Dict[str, Any]:
    """The pretraining charts, every one against the epoch: loss; kNN and online probe accuracy; collapse."""
    color = ROLE_COLORS[CANDIDATE_ROLE]
    epochs = phase_epochs(history, PRETRAIN_PHASE)
    charts, notes = [], []
    if PRETRAIN_LOSS_KEY in history:
        charts.append(_chart("Pretraining loss", [Series(CANDIDATE_ROLE, history[PRETRAIN_LOSS_KEY], color)],
                             "epoch", "loss"))
    quality = []
    knn = None
    if history.get(KNN_KEY):
        knn = knn_check_epochs(len(history[KNN_KEY]), epochs, _monitor_every(settings))
        quality.append(Series("kNN accuracy (eval split)", history[KNN_KEY], color, x=knn.epochs))
    if history.get(PROBE_KEY):
        quality.append(Series("online linear probe (labeled train images)", history[PROBE_KEY], PROBE_COLOR,
                              dashed=True))
    if quality:
        by_check = knn is not None and knn.epochs is None
        x_label = "kNN check (its epoch is unknown)" if by_check else "epoch"
        if by_check and len(quality) > 1:  # the probe is per epoch: it cannot share a check-number axis
            charts.append(_chart("Online probe accuracy of the encoder", quality[1:], "epoch", "accuracy"))
            quality = quality[:1]
        charts.append(_chart("Encoder quality: kNN and online probe accuracy", quality, x_label, "accuracy"))
        notes.append("kNN accuracy: each eval image labelled by a similarity-weighted vote of its training.knn_k "
                     "nearest labeled train images in the encoder's feature space; " +
                     (knn.explanation if knn else "not recorded") + ". Online probe: a linear classifier trained "
                     "alongside pretraining on stop-gradient features; its accuracy on the labeled train images in "
                     "each epoch's batches, every epoch (it does not shape the encoder).")
    for key, (name, meaning) in COLLAPSE_SIGNALS.items():
        if key in history:
            charts.append(_chart(f"Collapse signal: {name}", [Series(CANDIDATE_ROLE, history[key], color)],
                                 "epoch", name))
            notes.append(f"Collapse signal, {meaning}.")
    return {"charts": charts, "notes": notes, "epochs": epochs,
            "knn_epochs": knn.epochs if knn else None}


def _augmented_views(views: Optional[Dict[str, Any]]) -> Optional[Dict[str, str]]:
    """The Pretrainer's augmented views as a data URI, with a caption naming the columns and the settings."""
    if not views:
        return None
    overrides = views.get("pretrain_augment")
    if overrides is None:
        made_with = "the pretraining augmenter (its training.pretrain_augment was not recorded)"
    elif overrides:
        made_with = ("the pretraining augmenter: the strong preset with training.pretrain_augment "
                     + ", ".join(f"{name}={value}" for name, value in sorted(overrides.items())))
    else:
        made_with = "the pretraining augmenter: the strong preset (training.pretrain_augment sets nothing)"
    return {"src": "data:image/png;base64," + views["png"],
            "caption": f"Each row: a pretraining image as decoded, its first augmented view and its second, from "
                       f"{made_with}, seeded with training.seed."}


def _finetuning(histories: Dict[str, Dict[str, List[float]]]) -> Dict[str, Any]:
    """Accuracy and loss of both classifiers against the classifier epoch, the candidate's phases marked;
    FixMatch's objective and share of pseudo-labelled images, and the distillation objective and the teacher
    agreement, when the candidate had those stages."""
    phases = {role: training_phases(histories[role], role) for role in ROLES}
    bands = [Band(phase.label, phase.first_epoch, phase.last_epoch) for phase in phases[CANDIDATE_ROLE]]
    charts = []
    for metric, keys in FINETUNE_CURVES.items():
        series = []
        for role in ROLES:
            for split, key in keys.items():
                metric_of_phase = {phase.name: key for phase in phases[role]}
                if split == "train" and metric in SEMI_SUPERVISED_TRAIN_METRIC:
                    metric_of_phase.update({phase: SEMI_SUPERVISED_TRAIN_METRIC[metric]
                                            for phase in SEMI_SUPERVISED_PHASES})
                epochs, values = phase_curve(histories[role], phases[role], metric_of_phase)
                if values:
                    series.append(Series(f"{role} {split}", values, ROLE_COLORS[role], dashed=(split == "validation"),
                                         x=epochs))
        if series:
            charts.append(_chart(f"Classifier training {metric}", series, "epoch", metric, bands=bands))
    candidate = histories[CANDIDATE_ROLE]
    return {"charts": charts, "fixmatch_charts": _stage_charts(FIXMATCH_PHASE, candidate),
            "distill_charts": _stage_charts(DISTILL_PHASE, candidate), "phases": phases}


def _stage_charts(phase: str, history: Dict[str, List[float]]) -> List[Dict[str, str]]:
    """A semi-supervised stage's charts (STAGE_CHARTS) from the candidate's history: its loss terms, and its
    signal on the unlabeled images; none for a stage that did not run."""
    stage = STAGE_CHARTS[phase]
    charts = []
    terms = (("loss", "total"), stage.unlabeled_loss, ("labeled_loss", "labels (cross-entropy)"))
    losses = [Series(label, history[history_key(phase, key)], color, dashed=(key == "loss"))
              for (key, label), color in zip(terms, LOSS_COLORS) if history.get(history_key(phase, key))]
    if losses:
        charts.append(_chart(stage.loss_title, losses, stage.epoch, "loss"))
    key, title, label, y_label = stage.signal
    if history.get(history_key(phase, key)):
        charts.append(_chart(title, [Series(label, history[history_key(phase, key)], ROLE_COLORS[CANDIDATE_ROLE])],
                             stage.epoch, y_label))
    return charts


def _listed(rows: Optional[List[Any]]) -> Optional[Dict[str, Any]]:
    """The first LISTED_SHOWN entries of a list and how many more there are; None when not recorded."""
    if rows is None:
        return None
    return {"count": len(rows), "shown": rows[:LISTED_SHOWN], "more": max(0, len(rows) - LISTED_SHOWN)}


def _data_view(data: Dict[str, Any]) -> Dict[str, Any]:
    ingest = data["data"]
    fingerprint = ingest.get("input")
    duplicates = ingest.get("eval_duplicates")
    train_per_class = (data.get("examples") or {}).get("train_per_class")
    eval_per_class = ingest.get("eval_per_class")
    class_rows = None
    if eval_per_class is not None or train_per_class is not None:
        class_rows = [{"name": name, "train": (train_per_class or {}).get(name),
                       "eval": (eval_per_class or {}).get(name)} for name in data["class_names"]]
    skipped = ingest["skipped"]
    return {
        "fingerprint": None if fingerprint is None else dict(
            fingerprint, short=fingerprint["fingerprint"].split(":")[-1][:12]),
        "class_rows": class_rows,
        "train_known": train_per_class is not None,
        "eval_known": eval_per_class is not None,
        "train_total": sum(train_per_class.values()) if train_per_class else None,
        "labeled_train_images": data.get("labeled_train_images"),
        "duplicates": None if duplicates is None else dict(_listed(duplicates["files"]), policy=duplicates["policy"],
                                                           count=duplicates["count"]),
        "ignored": _listed(ingest.get("ignored_non_image_files")),
        "links": _listed(ingest.get("links_not_followed")),
        "skipped": skipped[:SKIPPED_SHOWN],
        "skipped_more": max(0, len(skipped) - SKIPPED_SHOWN),
    }


def _misclassified(data: Dict[str, Any]) -> Optional[Dict[str, Any]]:
    examples = data.get("examples")
    if examples is None:
        return None
    found = examples["misclassified"]
    return dict(found, roles=[(role, found["models"][role]) for role in ROLES])


def _setting_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _settings_rows(settings: Dict[str, Any]) -> Optional[Dict[str, Any]]:
    """One row per setting, one column per Trainer that recorded its settings; None when none did."""
    roles = [role for role in (PRETRAINER_ROLE, CANDIDATE_ROLE, BASELINE_ROLE) if settings.get(role)]
    if not roles:
        return None
    names = sorted({name for role in roles for name in settings[role]})
    rows = [{"name": name, "cells": [_setting_text(settings[role][name]) if name in settings[role] else ""
                                      for role in roles]} for name in names]
    return {"roles": roles, "rows": rows}
