"""PairedComparison: the uncertainty of the candidate-vs-baseline difference on the same eval images.

Its output's format and the "significantly better" rule are components/model_comparison.py, which BlessingGate,
the report and summary.json read; no other component imports this package's modules.
"""
