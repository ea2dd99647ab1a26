"""Backtests: replay a historical stream through the production pipeline in event time.

:mod:`.run` replays and scores (champion and challengers side by side, leakage guard),
:mod:`.metrics` computes what risk teams compare, :mod:`.report` writes the HTML and JSON.
"""
