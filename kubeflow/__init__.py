"""Kubeflow Pipelines (v2) / Vertex AI Pipelines: compile the selfsup pipeline (see docs/kubeflow.md)."""
