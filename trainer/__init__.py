"""The Trainer module of selfsup: data, augmentation, encoders, SSL methods, fine-tuning, export.

Imports nothing from pipeline/, components/ or kubeflow/: it runs inside TFX's Trainer executor
and the pipeline's container image.
"""
