"""``riskgraph backtest``: load the models and policies, open the source, replay, report."""

from __future__ import annotations

import argparse
import hashlib
import json
import math
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from feature_stream.event_io import EventSource, FileEventSource
from gnn.artifact import ModelBundle, load_artifact
from gnn.evaluation import ground_truth
from gnn.train import DAY, TrainConfig, stream_end
from services.backtest.checkpoint import Checkpoint
from services.backtest.metrics import compute, truth_from_labels
from services.backtest.parallel import run_backtest_parallel
from services.backtest.prequential import Retrainer, RetrainSchedule, parse_duration
from services.backtest.report import write_report
from services.backtest.run import BacktestConfig, run_backtest
from services.backtest.sources import KafkaRangeSource
from services.config_files import OptionError, read_model
from services.container import build_policy
from services.policy import PolicyEvaluator
from services.settings import Settings

Source = Path | KafkaRangeSource
"""A stream directory or a Kafka time range."""


def parse_models(specs: list[str]) -> dict[str, Path]:
    """``NAME=DIR`` (or just ``DIR``, named by its folder) → ordered ``{name: dir}``."""
    out: dict[str, Path] = {}
    for spec in specs:
        name, _, path = spec.rpartition("=")
        p = Path(path)
        name = name or p.name
        if name in out:
            raise OptionError(f"model name {name!r} given twice")
        out[name] = p
    return out


def parse_policies(specs: list[str], models: dict[str, Path]) -> dict[str, Path]:
    """``NAME=PATH`` → ``{model name: policy bundle dir or data.json override}``."""
    out: dict[str, Path] = {}
    for spec in specs:
        name, sep, path = spec.partition("=")
        if not sep or name not in models:
            raise OptionError(f"--policy wants NAME=PATH with NAME one of {list(models)}: {spec!r}")
        out[name] = Path(path)
    return out


def load_policy(spec: Path) -> PolicyEvaluator:
    """A decision policy for one model name: a compiled bundle directory (``policy.wasm``,
    ``data.json``, ``revision``: e.g. built by ``policies/build.sh`` from other Rego), or a JSON
    file deep-merged over the packaged bundle's data (other thresholds, e.g.
    ``{"riskgraph": {"decision": {"config": {"decline_threshold": 0.8}}}}``). The revision of
    an override names a digest of the file, so two overrides never look alike in a report."""
    from services.policy_opa import WasmPolicy

    spec = Path(spec)
    if spec.is_dir():
        return WasmPolicy(spec, policy_dir=None)  # its own sources: no staleness check here
    text = spec.read_text()
    policy = WasmPolicy(data_overrides=json.loads(text))
    policy.revision += "-" + hashlib.sha256(text.encode()).hexdigest()[:8]
    return policy


def _iso(text: str, option: str) -> datetime:
    """An ISO 8601 option value; :class:`OptionError` naming ``option`` if it is not one."""
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        raise OptionError(f"{option} wants an ISO 8601 time, got {text!r}") from None


def iso_time(text: str, option: str) -> float:
    """Epoch seconds of an ISO 8601 option value (see :func:`_iso`)."""
    return _iso(text, option).timestamp()


def _aware(text: str, option: str) -> datetime:
    when = _iso(text, option)
    if when.tzinfo is None:
        raise OptionError(f"{option} needs a time zone (…Z or +00:00): {text!r}")
    return when


def kafka_source(args: argparse.Namespace) -> KafkaRangeSource:
    """The Kafka range of ``--kafka-bootstrap``, ``--topic-prefix``, ``--from``, ``--to``."""
    return KafkaRangeSource(
        args.kafka_bootstrap,
        args.topic_prefix,
        _aware(args.from_time, "--from") if args.from_time else None,
        _aware(args.to_time, "--to") if args.to_time else None,
    )


def check_args(args: argparse.Namespace) -> None:
    """Refuse options that would be silently ignored."""
    if args.stream and (args.topic_prefix or args.from_time or args.to_time):
        raise OptionError("--topic-prefix, --from and --to read Kafka: use --kafka-bootstrap")
    if args.resume and not args.checkpoint:
        raise OptionError("--resume needs --checkpoint DIR")
    retrain_only = (args.train_window, args.retrain_model, args.train_config)
    if not args.retrain_every and any(retrain_only):
        raise OptionError("--train-window, --retrain-model and --train-config need --retrain-every")
    if args.workers < 1:
        raise OptionError(f"--workers must be at least 1, got {args.workers}")
    if args.workers > 1:
        serial = {
            "--retrain-every": args.retrain_every,
            "--checkpoint": args.checkpoint,
            "--speed": args.speed,
            "--kafka-bootstrap": args.kafka_bootstrap,
        }
        used = [name for name, value in serial.items() if value]
        if used:
            raise OptionError(f"--workers > 1 replays files in slices; not with {', '.join(used)}")


def retrain_schedule(args: argparse.Namespace, models: dict[str, Path]) -> RetrainSchedule | None:
    """The prequential schedule of ``--retrain-every`` and its companions (``None``: off)."""
    if not args.retrain_every:
        return None
    name = args.retrain_model or list(models)[-1]
    if name not in models:
        raise OptionError(f"--retrain-model {name!r} is not one of {list(models)}")
    cfg = (
        read_model(TrainConfig, args.train_config, "--train-config")
        if args.train_config
        else TrainConfig()
    )
    return RetrainSchedule(
        name,
        parse_duration(args.retrain_every),
        parse_duration(args.train_window) if args.train_window else None,
        cfg,
    )


def check_stream(stream: Path) -> None:
    """Refuse (:class:`OptionError`) a ``--stream`` that is no stream directory."""
    if not stream.is_dir():
        raise OptionError(f"--stream {stream}: not a directory")
    try:
        FileEventSource(stream)
    except FileNotFoundError as exc:
        raise OptionError(f"--stream {stream}: {exc}") from exc


def _shown(t: float) -> str:
    """Epoch seconds as ISO 8601 for a message (``end`` for infinity)."""
    return datetime.fromtimestamp(t, UTC).isoformat() if math.isfinite(t) else "end"


def window_start(source: Source, since: str | None, last_days: float | None) -> float:
    """Epoch seconds where scoring starts: ``since`` (ISO 8601), else ``last_days`` (default
    7) before the source's last payment."""
    if since is not None:
        return iso_time(since, "--since")
    if isinstance(source, KafkaRangeSource):
        end = source.last_payment_time()
        if end is None:
            raise OptionError(f"no payment in {source.describe()}")
    else:
        end = stream_end(source)
    return end - (7.0 if last_days is None else last_days) * DAY


def stream_size(stream: Path) -> int | None:
    """Records in a stream directory according to its manifest (``None`` if it has none)."""
    path = Path(stream) / "manifest.json"
    if not path.exists():
        return None
    files = json.loads(path.read_text()).get("files", {})
    counts = [
        (f.get("records"), f.get("malformed", 0))
        for name, f in files.items()
        if name.endswith(".jsonl")
    ]
    if not counts or not all(isinstance(r, int) and isinstance(m, int) for r, m in counts):
        return None
    return sum(r + m for r, m in counts)  # malformed lines are records too (dead letters)


def open_source(source: Source) -> tuple[EventSource, str, int | None]:
    """The records, their description and their count if known (for the progress bar)."""
    if isinstance(source, KafkaRangeSource):
        return source, source.describe(), source.size()
    return FileEventSource(source), str(source), stream_size(source)


def backtest(
    source: Source,
    models: dict[str, Path],
    out_dir: Path,
    since: float,
    until: float = math.inf,
    label_delay_days: float = 0.0,
    k: int = 100,
    seed: int = 0,
    progress: bool = True,
    policies: dict[str, Path] | None = None,
    speed: float | None = None,
    retrain: RetrainSchedule | None = None,
    checkpoint: Checkpoint | None = None,
    workers: int = 1,
) -> dict[str, Any]:
    """Replay ``source`` with each model in ``models`` (the first is the champion), each
    under its policy in ``policies`` or else the configured decision policy; retrain, pace
    and checkpoint as asked, or replay in ``workers`` processes
    (:mod:`services.backtest.parallel`, a stream directory only); write the report into
    ``out_dir``; return its metrics.

    Retrained artifacts go to ``out_dir/models``."""
    if workers > 1 and (retrain or checkpoint or speed or not isinstance(source, Path)):
        raise OptionError("workers > 1 replays a stream directory without retrain/checkpoint/speed")
    loaded: dict[Path, ModelBundle] = {}  # one artifact given twice is loaded (and scored) once
    for name, path in models.items():
        if path not in loaded:
            try:
                loaded[path] = load_artifact(path)
            except (OSError, ValueError) as exc:  # not an artifact, or one this build refuses
                raise OptionError(f"--model {name}={path}: {exc}") from exc
    bundles = {name: loaded[path] for name, path in models.items()}
    policy = build_policy(Settings())
    own = {name: load_policy(spec) for name, spec in (policies or {}).items()}
    records, described, total = open_source(source)
    cfg = BacktestConfig(since=since, until=until, label_delay_s=label_delay_days * DAY)
    retrainer = (
        Retrainer(retrain, since, Path(out_dir) / "models", source=described, progress=progress)
        if retrain is not None
        else None
    )
    try:
        if workers > 1:
            assert isinstance(source, Path)
            end = min(until, stream_end(source) + 1.0)
            run = run_backtest_parallel(
                records, bundles, policy, cfg, end, workers, progress=progress, policies=own
            )
        else:
            run = run_backtest(
                records, bundles, policy, cfg,
                progress=progress, total=total, policies=own, speed=speed,
                retrainer=retrainer, checkpoint=checkpoint, source=described,
            )  # fmt: skip
    finally:
        for p in [policy, *own.values()]:
            p.close()
    if not run.payments:
        raise OptionError(
            f"no payment of {described} in the scored window "
            f"[{_shown(since)}, {_shown(until)}): see --since, --last-days and --until"
        )
    stream = source if isinstance(source, Path) else None
    truth = (
        ground_truth(stream)
        if stream is not None and (stream / "ground_truth.csv").exists()
        else truth_from_labels(run)
    )
    metrics = compute(run, truth, k=k, seed=seed)
    paths = write_report(run, truth, metrics, out_dir, title=f"riskgraph backtest of {described}")
    metrics["files"] = {k: str(v) for k, v in paths.items()}
    return metrics
