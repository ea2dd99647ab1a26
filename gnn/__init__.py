"""Sampling → tensors, models, training, evaluation and the inference engine.

Imports ``feature_stream``; never ``services``.
"""
