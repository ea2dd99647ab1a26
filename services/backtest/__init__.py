"""Backtests: replay a historical stream through the production pipeline in event time.

:mod:`.run` replays and scores (champion and challengers side by side, leakage guard) with
:mod:`.scorer` (a model and a decision policy per name); :mod:`.sources` reads a Kafka time
range; :mod:`.prequential` retrains on schedule, :mod:`.pacing` replays at N× real time and
:mod:`.checkpoint` saves and resumes; :mod:`.metrics` computes what risk teams compare,
:mod:`.report` writes the HTML and JSON, :mod:`.command` is ``riskgraph backtest``.
"""
