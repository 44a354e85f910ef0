"""Renders the report data (report_data.py) as one self-contained HTML page.

Charts are SVG documents embedded as data: URIs; the style sheet is inline; there is no script
and no network resource, so the file reads the same when copied anywhere or opened offline.
"""

import base64
import html
from typing import Any, Dict, List, Optional, Sequence

from components.evaluation_report.decision import p_value_text
from components.evaluation_report.svg_chart import Series, line_chart
from components.paired_comparison.statistics import significantly_better

ROLES = ("candidate", "baseline")
ROLE_COLORS = {"candidate": "#1f77b4", "baseline": "#d95f02"}
# Fine-tuning phases in each Trainer's history (trainer/finetune.py), in the order they ran.
FINETUNE_PHASES = {"candidate": ("linear", "finetune"), "baseline": ("supervised",)}
# history key -> (name, what it shows) of the method's collapse signal (trainer/methods.py).
COLLAPSE_SIGNALS = {
    "pretrain/output_std": ("output std", "SimSiam/BYOL: the spread of the normalized outputs; near 0 means "
                            "the representation collapsed to a constant"),
    "pretrain/contrastive_accuracy": ("contrastive accuracy", "SimCLR: how often an image's other view is its "
                                      "most similar one in the batch; stuck near chance means no learning"),
}
METRIC_LABELS = {"sparse_categorical_accuracy": "accuracy", "example_count": "examples"}
COUNT_METRICS = {"example_count"}
SKIPPED_SHOWN = 100

_STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 0; color: #222;
       background: #f6f6f6; }
main { max-width: 1120px; margin: 0 auto; padding: 24px; }
section { background: white; border: 1px solid #ddd; border-radius: 6px; padding: 16px 20px; margin: 16px 0; }
h1 { font-size: 22px; margin: 0 0 8px; }
h2 { font-size: 18px; margin: 0 0 12px; }
table { border-collapse: collapse; margin: 8px 0; }
th, td { border: 1px solid #ddd; padding: 4px 10px; text-align: right; }
th { background: #fafafa; }
th:first-child, td.name { text-align: left; }
.verdict { font-size: 26px; font-weight: bold; margin: 4px 0 8px; }
.blessed { border-left: 8px solid #1a9850; }
.blessed .verdict { color: #1a9850; }
.not-blessed { border-left: 8px solid #d73027; }
.not-blessed .verdict { color: #d73027; }
.passed { color: #1a9850; font-weight: bold; }
.failed { color: #d73027; font-weight: bold; }
.note { color: #666; font-size: 13px; }
.side-by-side { display: flex; flex-wrap: wrap; gap: 24px; align-items: flex-start; }
.matrix td { min-width: 36px; text-align: center; }
.matrix td.dark { color: white; }
img { max-width: 100%; }
"""


def render_html(data: Dict[str, Any]) -> str:
    """The whole report page for a report data dict."""
    blessed = data["decision"]["blessed"]
    sections = [
        _decision_section(data),
        _overall_metrics_section(data),
        _per_class_section(data),
        _confusion_matrices_section(data),
        _pretraining_section(data["histories"]["candidate"]),
        _finetuning_section(data["histories"]),
        _data_section(data["data"]),
        _sources_section(data["sources"]),
    ]
    title = f"selfsup report: {'BLESSED' if blessed else 'NOT BLESSED'}"
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        f"<title>{_escape(title)}</title>\n<style>{_STYLE}</style>\n</head>\n<body>\n<main>\n"
        + "\n".join(sections)
        + "\n</main>\n</body>\n</html>\n"
    )


def _escape(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _number(value: Optional[float], digits: int = 4) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _metric_value(name: str, value: Optional[float]) -> str:
    return f"{value:g}" if name in COUNT_METRICS and value is not None else _number(value)


def _metric_label(name: str) -> str:
    return METRIC_LABELS.get(name, name.replace("_", " "))


def _table(header: Sequence[str], rows: List[str], table_class: str = "") -> str:
    """A table from escaped header texts and already rendered <td> rows."""
    head = "".join(f"<th>{_escape(text)}</th>" for text in header)
    class_attribute = f' class="{table_class}"' if table_class else ""
    body = "\n".join(f"<tr>{row}</tr>" for row in rows)
    return f"<table{class_attribute}>\n<tr>{head}</tr>\n{body}\n</table>"


def _decision_section(data: Dict[str, Any]) -> str:
    decision = data["decision"]
    verdict = "BLESSED" if decision["blessed"] else "NOT BLESSED"
    metric = _metric_label(decision["metric"])
    key_numbers = [
        f'<td class="name">candidate {metric} ({_escape(decision["method"])})</td>'
        f'<td id="candidate-accuracy" data-value="{decision["candidate"]!r}">{_number(decision["candidate"])}</td>',
        f'<td class="name">supervised baseline {metric}</td>'
        f'<td id="baseline-accuracy" data-value="{decision["baseline"]!r}">{_number(decision["baseline"])}</td>',
        f'<td class="name">difference (candidate - baseline, TFMA)</td>'
        f'<td id="accuracy-difference" data-value="{decision["difference"]!r}">{decision["difference"]:+.4f}</td>',
    ] + _significance_rows(decision.get("significance")) + _production_rows(decision.get("production"), metric)
    thresholds = [
        f'<td class="name">{_escape(_metric_label(row["metric"]))}</td>'
        f'<td class="name">{"candidate - baseline" if row["kind"] == "change" else "candidate"}</td>'
        f'<td>{_escape(row["required"])}</td>'
        f'<td class="{"passed" if row["passed"] else "failed"}">{"passed" if row["passed"] else "failed"}</td>'
        for row in data["thresholds"]
    ]
    failures = "".join(f"<li>{_escape(failure)}</li>" for failure in data["failures"])
    pushed = (f'<p>Pushed to <code>{_escape(decision["pushed_to"])}</code>.</p>' if decision["pushed_to"]
              else "<p>Nothing was pushed.</p>")
    return (
        f'<section id="decision-section" class="{"blessed" if decision["blessed"] else "not-blessed"}">\n'
        f'<h1>selfsup evaluation report</h1>\n<p class="verdict" id="verdict">{verdict}</p>\n'
        f'<p id="decision">{_escape(decision["text"])}</p>\n{pushed}\n'
        + _table(["", "value"], key_numbers)
        + _significance_note(decision.get("significance"))
        + "\n<h2>Thresholds checked by TFMA</h2>\n"
        + _table(["metric", "on", "required", "result"], thresholds)
        + (f"\n<p>TFMA's validation failures:</p><ul>{failures}</ul>" if failures else "")
        + "\n</section>"
    )


def _significance_rows(significance: Optional[Dict[str, Any]]) -> List[str]:
    """The uncertainty of the difference (PairedComparison) as rows of the key numbers; none without it."""
    if significance is None:
        return []
    verdict = "significant" if significance["significant"] else "not significant"
    result = ""
    if significance["required"]:  # evaluation.require_significant: part of the blessing rule
        result = f' class="{"passed" if significantly_better(significance) else "failed"}"'
    return [
        f'<td class="name">{significance["confidence"]:.0%} interval of the difference (paired bootstrap)</td>'
        f'<td id="difference-interval" data-low="{significance["ci_low"]!r}" data-high="{significance["ci_high"]!r}">'
        f'[{significance["ci_low"]:+.4f}, {significance["ci_high"]:+.4f}]</td>',
        f'<td class="name">McNemar exact p-value ({significance["eval_images"]} eval images; significant below '
        f'{significance["significance_level"]:g}{", required" if significance["required"] else ""})</td>'
        f'<td id="p-value"{result} data-value="{significance["p_value"]!r}">'
        f'{_escape(p_value_text(significance["p_value"]))} ({verdict})</td>',
    ]


def _significance_note(significance: Optional[Dict[str, Any]]) -> str:
    if significance is None:
        return ""
    return (
        '\n<p class="note">How sure the difference is: the interval resamples the eval images with replacement, '
        "each keeping both models' answers; McNemar's exact test asks whether the images only one of the two "
        "models got right split evenly between them (two-sided binomial test). Both come from the same eval "
        "images as the accuracies above.</p>"
    )


def _production_rows(production: Optional[Dict[str, Any]], metric: str) -> List[str]:
    """The comparison with the model in production (evaluation.compare_to_pushed), as rows of the key numbers."""
    if production is None:
        return []
    result = "passed" if production["passed"] else "failed"
    if production["production_model"] is None:
        return [f'<td class="name">model in production</td><td id="production-model">none yet ({result})</td>']
    return [
        f'<td class="name">{metric} of the model in production '
        f'(<code>{_escape(production["production_model"])}</code>)</td>'
        f'<td id="production-accuracy" data-value="{production["production"]!r}">'
        f'{_number(production["production"])}</td>',
        f'<td class="name">difference (candidate - production, TFMA; must be above 0)</td>'
        f'<td id="production-difference" class="{result}" data-value="{production["difference"]!r}">'
        f'{production["difference"]:+.4f} ({result})</td>',
    ]


def _overall_metrics_section(data: Dict[str, Any]) -> str:
    models = data["models"]
    names = sorted(set(models["candidate"]["metrics"]) | set(models["baseline"]["metrics"]))
    rows = [
        f'<td class="name">{_escape(_metric_label(name))}</td>'
        + "".join(f"<td>{_metric_value(name, models[role]['metrics'].get(name))}</td>" for role in ROLES)
        for name in names
    ]
    rows.append(
        '<td class="name">expected calibration error (top-1 confidence)</td>'
        + "".join(f"<td>{_number(models[role]['expected_calibration_error'])}</td>" for role in ROLES)
    )
    return (
        '<section id="overall-metrics">\n<h2>Overall metrics on the eval split</h2>\n'
        + _table(["metric", "candidate", "baseline"], rows)
        + '\n<p class="note">Values as TFMA computed them; the calibration error is read off TFMA\'s calibration '
        "plot of each example's highest probability.</p>\n</section>"
    )


def _per_class_section(data: Dict[str, Any]) -> str:
    models = data["models"]
    if any(models[role]["per_class"] is None for role in ROLES):
        return _missing_section("per-class", "Per-class precision and recall")
    rows = []
    for class_id, class_name in enumerate(data["class_names"]):
        candidate, baseline = (models[role]["per_class"][class_id] for role in ROLES)
        rows.append(
            f'<td class="name">{_escape(class_name)}</td><td>{candidate["support"]:g}</td>'
            + "".join(f"<td>{_number(row[metric])}</td>" for row in (candidate, baseline)
                      for metric in ("precision", "recall"))
        )
    sources = sorted({models[role]["per_class_source"] for role in ROLES})
    return (
        '<section id="per-class">\n<h2>Per-class precision and recall</h2>\n'
        + _table(["class", "eval examples", "candidate precision", "candidate recall", "baseline precision",
                  "baseline recall"], rows)
        + f'\n<p class="note">From {_escape(", ".join(sources))}; the predicted class is the most probable one. '
        "n/a: no example was predicted as (precision) or labelled as (recall) that class.</p>\n</section>"
    )


def _confusion_matrices_section(data: Dict[str, Any]) -> str:
    if any(data["models"][role]["confusion_matrix"] is None for role in ROLES):
        return _missing_section("confusion-matrices", "Confusion matrices")
    tables = "".join(
        f'<div><h3>{role}</h3>{_confusion_table(data["models"][role]["confusion_matrix"], data["class_names"])}</div>'
        for role in ROLES
    )
    return (
        '<section id="confusion-matrices">\n<h2>Confusion matrices (TFMA)</h2>\n'
        f'<div class="side-by-side">{tables}</div>\n'
        '<p class="note">Rows: actual class; columns: predicted class; shading: share of the row.</p>\n</section>'
    )


def _missing_section(section_id: str, title: str) -> str:
    return (f'<section id="{section_id}">\n<h2>{title}</h2>\n<p>This evaluation has no confusion matrix: its TFMA '
            "config predates the report's metrics (pipeline/evaluation.py).</p>\n</section>")


def _confusion_table(matrix: List[List[float]], class_names: List[str]) -> str:
    rows = []
    for class_name, counts in zip(class_names, matrix):
        total = sum(counts)
        shares = [count / total if total else 0.0 for count in counts]
        cells = "".join(
            f'<td class="{"dark" if share > 0.6 else "light"}" style="background: rgba(31, 119, 180, {share:.2f})">'
            f"{count:g}</td>"
            for count, share in zip(counts, shares)
        )
        rows.append(f'<td class="name">{_escape(class_name)}</td>{cells}')
    return _table(["actual \\ predicted", *class_names], rows, "matrix")


def _chart_image(title: str, series: List[Series], x_label: str, y_label: str) -> str:
    svg = line_chart(title, series, x_label, y_label)
    encoded = base64.b64encode(svg.encode("utf-8")).decode("ascii")
    return f'<img alt="{_escape(title)}" src="data:image/svg+xml;base64,{encoded}">'


def _pretraining_section(history: Dict[str, List[float]]) -> str:
    color = ROLE_COLORS["candidate"]
    charts = []
    if "pretrain/loss" in history:
        charts.append(_chart_image("Pretraining loss", [Series("candidate", history["pretrain/loss"], color)],
                                   "epoch", "loss"))
    if "pretrain/knn_accuracy" in history:
        charts.append(_chart_image(
            "kNN accuracy of the encoder", [Series("candidate", history["pretrain/knn_accuracy"], color)],
            "kNN check (every training.monitor_every_epochs epochs)", "eval accuracy"))
    notes = []
    for key, (name, meaning) in COLLAPSE_SIGNALS.items():
        if key in history:
            charts.append(_chart_image(f"Collapse signal: {name}", [Series("candidate", history[key], color)],
                                       "epoch", name))
            notes.append(f'<p class="note">Collapse signal, {_escape(meaning)}.</p>')
    body = (f'<div class="side-by-side">{"".join(charts)}</div>{"".join(notes)}' if charts
            else "<p>The candidate's history has no pretraining curves.</p>")
    return f'<section id="pretraining">\n<h2>Self-supervised pretraining (candidate)</h2>\n{body}\n</section>'


def _phase_values(history: Dict[str, List[float]], role: str, metric: str) -> List[float]:
    return [value for phase in FINETUNE_PHASES[role] for value in history.get(f"{phase}/{metric}", [])]


def _finetuning_section(histories: Dict[str, Dict[str, List[float]]]) -> str:
    charts = []
    for metric in ("accuracy", "loss"):
        series = []
        for role in ROLES:
            for split, key in (("train", metric), ("validation", f"val_{metric}")):
                values = _phase_values(histories[role], role, key)
                if values:
                    series.append(Series(f"{role} {split}", values, ROLE_COLORS[role], dashed=(split == "validation")))
        if series:
            charts.append(_chart_image(f"Fine-tuning {metric}", series, "epoch", metric))
    linear_epochs = len(histories["candidate"].get("linear/accuracy", []))
    return (
        '<section id="finetuning">\n<h2>Fine-tuning</h2>\n'
        f'<div class="side-by-side">{"".join(charts)}</div>\n'
        f'<p class="note">Candidate: {linear_epochs} epoch{"" if linear_epochs == 1 else "s"} of a linear head on '
        "the frozen encoder, then the whole network; baseline: the same number of epochs from random weights, whole "
        "network.</p>\n</section>"
    )


def _data_section(data: Dict[str, Any]) -> str:
    split_rows = [
        f'<td class="name">{_escape(split)}</td><td>{counts["read"]}</td><td>{counts["written"]}</td>'
        f'<td>{counts["skipped"]}</td>'
        for split, counts in data["splits"].items()
    ]
    skipped = data["skipped"]
    skipped_rows = [
        f'<td class="name">{_escape(row["id"])}</td><td class="name">{_escape(row["split"])}</td>'
        f'<td class="name">{_escape(row["reason"])}</td>'
        for row in skipped[:SKIPPED_SHOWN]
    ]
    more = (f'<p class="note">... and {len(skipped) - SKIPPED_SHOWN} more (see the ingest report).</p>'
            if len(skipped) > SKIPPED_SHOWN else "")
    skipped_html = (_table(["skipped image", "split", "reason"], skipped_rows) + more if skipped
                    else "<p>No image was skipped.</p>")
    return (
        f'<section id="data">\n<h2>Data</h2>\n<p>Source: {_escape(data["source"])} '
        f'<code>{_escape(data["location"])}</code></p>\n'
        + _table(["split", "images read", "used", "skipped"], split_rows)
        + f"\n{skipped_html}\n</section>"
    )


def _sources_section(sources: Dict[str, Any]) -> str:
    items = "".join(f"<li>{_escape(name)}: <code>{_escape(path)}</code></li>"
                    for name, path in sources.items() if path)
    return f'<section id="sources">\n<h2>Where these numbers come from</h2>\n<ul>{items}</ul>\n</section>'
