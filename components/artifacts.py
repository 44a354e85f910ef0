"""Artifact types that selfsup's components add to TFX's standard ones."""

from tfx.types.artifact import Artifact


class IngestReport(Artifact):
    """ingest_report.json: class names, per-split counts of images read/written/skipped, skipped list."""

    TYPE_NAME = "selfsup.IngestReport"


class EvaluationReport(Artifact):
    """report.html and summary.json: the decision, both models' metrics and the training curves."""

    TYPE_NAME = "selfsup.EvaluationReport"


class ModelComparison(Artifact):
    """comparison.json: both models' accuracies on the same eval images, the paired bootstrap interval of
    their difference and the exact McNemar p-value (components/paired_comparison/)."""

    TYPE_NAME = "selfsup.ModelComparison"
