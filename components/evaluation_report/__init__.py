"""EvaluationReportGen: one self-contained HTML report of the decision, the metrics and the training curves."""
