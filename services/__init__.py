"""Scoring API, policy and audit ports, demo and CLI. Imports ``gnn`` and ``feature_stream``."""
