"""``riskgraph`` command line: generate, train, serve, demo, convert, backtest, audit, keys, token,
produce, stream."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from services.config_files import (
    ConfigFileError,
    OptionError,
    read_json_object,
    read_model,
    validate,
)
from services.heap import tune_collector

if TYPE_CHECKING:
    from feature_stream.generator import GeneratorConfig
    from gnn.train import TrainConfig


def _cmd_generate(args: argparse.Namespace) -> int:
    from feature_stream.generator import GeneratorConfig, generate

    overrides = {
        k: v
        for k, v in {
            "seed": args.seed,
            "n_accounts": args.accounts,
            "days": args.days,
            "invalid_rate": args.invalid_rate,
        }.items()
        if v is not None
    }
    config = GeneratorConfig(**overrides)
    _refuse_a_future_stream(config)
    manifest = generate(config, Path(args.out), progress=not args.quiet)
    print(json.dumps({k: manifest[k] for k in manifest if k != "config"}, indent=2, default=str))
    return 0


def train_config(args: argparse.Namespace) -> TrainConfig:
    """``riskgraph train``'s settings: ``--config``'s JSON, then the options given."""
    from gnn.train import TrainConfig

    base = read_json_object(args.config, "--config") if args.config else {}
    given = {"epochs": args.epochs, "seed": args.seed, "holdout_days": args.holdout_days}
    source = f"--config {args.config} with the options given" if args.config else "options"
    return validate(
        TrainConfig, {**base, **{k: v for k, v in given.items() if v is not None}}, source
    )


def _cmd_train(args: argparse.Namespace) -> int:
    from gnn.train import train

    cfg = train_config(args)
    _, metrics = train(Path(args.stream), Path(args.out), cfg, progress=not args.quiet)
    print(json.dumps(metrics["val"], indent=2))
    print(f"artifact written to {args.out}")
    return 0


def _cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from services.api.app import create_app
    from services.container import build_container
    from services.heap import settle_heap
    from services.settings import load_settings

    overrides: dict[str, object] = {}
    if args.model:
        overrides["model_dir"] = Path(args.model)
    if args.history:
        overrides["history_dir"] = Path(args.history)
    settings = load_settings(**overrides)
    container = build_container(settings)
    settle_heap()
    app = create_app(container)
    try:
        uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    finally:
        container.close()
    return 0


def _refuse_a_future_stream(config: GeneratorConfig) -> None:
    """A generated stream must end before the clock: ingest refuses later events."""
    import time
    from datetime import UTC, datetime

    from feature_stream.generator import last_event_time
    from feature_stream.ingest import MAX_AHEAD_S

    last = last_event_time(config)
    if last.timestamp() > time.time() + MAX_AHEAD_S:
        raise OptionError(
            f"--days {config.days}: the stream (labels included) would run to "
            f"{last.date()}, after today ({datetime.now(UTC).date()}), and ingest refuses events "
            "dated after the clock; ask for fewer days"
        )


def _cmd_demo(args: argparse.Namespace) -> int:
    from feature_stream.generator import GeneratorConfig
    from services.demo import DemoConfig, run_demo

    if args.days is not None:
        _refuse_a_future_stream(GeneratorConfig(days=args.days))
    cfg = DemoConfig(
        workdir=Path(args.workdir),
        seed=args.seed,
        accounts=args.accounts,
        days=args.days,
        epochs=args.epochs,
        max_api_payments=args.max_api_payments,
        concurrency=args.concurrency,
    )
    summary = run_demo(cfg, progress=not args.quiet)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(summary, indent=2))
        print(f"summary written to {args.out}")
    return 0


def _cmd_keys_new(args: argparse.Namespace) -> int:
    from services.auth import hash_key, new_api_key
    from services.settings import load_settings

    key = new_api_key()
    entry = {
        "id": args.id,
        "tenant": args.tenant,
        "roles": args.roles.split(","),
        "rate_tier": args.rate_tier,
        "key_sha256": hash_key(key, load_settings().auth_pepper),
    }
    print(f"API key (shown once, give it to the client): {key}", file=sys.stderr)
    print(json.dumps(entry))
    return 0


def _cmd_token_new(args: argparse.Namespace) -> int:
    from services.auth import issue_token
    from services.settings import load_settings

    settings = load_settings()
    token = issue_token(
        settings.token_secret, args.user, args.tenant, args.roles.split(","), args.ttl_hours * 3600
    )
    print(token)
    print(
        f"analyst token for {args.user} (tenant {args.tenant}, roles {args.roles}), "
        f"valid {args.ttl_hours:g} h; sign in at /review/ with it",
        file=sys.stderr,
    )
    return 0


def _cmd_audit_verify(args: argparse.Namespace) -> int:
    from services.audit import verify_audit_log

    if args.kafka_topic is not None:
        import tempfile

        from services.audit_kafka import export_audit_topic
        from services.settings import load_settings

        bootstrap = args.bootstrap or load_settings().kafka_bootstrap
        with tempfile.TemporaryDirectory() as d:
            copy = Path(d) / "audit.log"
            export_audit_topic(bootstrap, args.kafka_topic, copy)
            result = verify_audit_log(copy, check_head=False)
    elif args.path is not None:
        result = verify_audit_log(Path(args.path))
    else:
        print("riskgraph audit verify: give PATH or --kafka-topic TOPIC", file=sys.stderr)
        return 2
    if result.ok:
        print(f"OK: {result.records} records, chain head {result.last_hash}")
        return 0
    print(f"BROKEN at record {result.first_bad}: {result.error}", file=sys.stderr)
    return 1


def _at_least_one(text: str) -> int:
    n = int(text)
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {n}")
    return n


def _cmd_produce(args: argparse.Namespace) -> int:
    from feature_stream.kafka_io import KafkaEventSink, all_topics, produce_stream
    from feature_stream.stream_app import StreamConfig

    given = {} if args.topic_prefix is None else {"topic_prefix": args.topic_prefix}
    cfg = StreamConfig(**given)  # RISKGRAPH_KAFKA_BOOTSTRAP, RISKGRAPH_TOPIC_PREFIX
    prefix = cfg.topic_prefix
    sink = KafkaEventSink(cfg.kafka_bootstrap, prefix=prefix)
    try:
        if args.partitions is not None:
            sink.ensure_topics(all_topics(prefix), args.partitions)
        rate = None if args.max else args.rate
        sent = produce_stream(Path(args.stream), sink, rate=rate, progress=not args.quiet)
    finally:
        sink.close()
    print(json.dumps({"sent": sent, "bootstrap": cfg.kafka_bootstrap, "topic_prefix": prefix}))
    return 0


def _cmd_stream(args: argparse.Namespace) -> int:
    from feature_stream.stream_app import StreamConfig, run_worker

    overrides = {
        k: v
        for k, v in {
            "topic_prefix": args.topic_prefix,
            "graph_backend": args.graph,
            "feature_backend": args.features,
            "namespace": args.namespace,
            "group_instance_id": args.instance_id,
            "metrics_port": args.metrics_port,
            "partitions": args.partitions,
        }.items()
        if v is not None
    }
    return run_worker(StreamConfig(**overrides))


def _cmd_convert(args: argparse.Namespace) -> int:
    from feature_stream.tabular import PRESETS, ColumnMapping, TableError, convert_table

    if (args.preset is None) == (args.mapping is None):
        raise OptionError("convert: give exactly one of --preset and --mapping")
    mapping = (
        PRESETS[args.preset]
        if args.preset
        else read_model(ColumnMapping, args.mapping, "--mapping")
    )
    try:
        manifest = convert_table(
            Path(args.input), mapping, Path(args.out), args.label_delay_days, not args.quiet
        )
    except TableError as exc:
        raise OptionError(f"--input {exc}") from exc
    print(json.dumps({k: v for k, v in manifest.items() if k != "mapping"}, indent=2))
    return 0


def _cmd_backtest(args: argparse.Namespace) -> int:
    import math

    from services.backtest.checkpoint import Checkpoint
    from services.backtest.command import (
        backtest,
        check_args,
        check_stream,
        iso_time,
        kafka_source,
        parse_models,
        parse_policies,
        retrain_schedule,
        window_start,
    )

    check_args(args)
    models = parse_models(args.model)
    until = math.inf if args.until is None else iso_time(args.until, "--until")
    since = None if args.since is None else iso_time(args.since, "--since")
    if args.stream:  # the options first, then the files
        check_stream(Path(args.stream))
    source = Path(args.stream) if args.stream else kafka_source(args)
    metrics = backtest(
        source,
        models,
        Path(args.out),
        since=since if since is not None else window_start(source, None, args.last_days),
        until=until,
        label_delay_days=args.label_delay_days,
        k=args.k,
        seed=args.seed,
        progress=not args.quiet,
        policies=parse_policies(args.policy, models),
        speed=args.speed,
        retrain=retrain_schedule(args, models),
        checkpoint=(
            Checkpoint(Path(args.checkpoint), args.checkpoint_every, args.resume)
            if args.checkpoint
            else None
        ),
        workers=args.workers,
    )
    for name, m in metrics["models"].items():
        print(
            f"{name:>12}  AUPRC {m['auprc']:.3f}  ROC AUC {m['roc_auc']:.3f}  "
            f"recall@1%FPR {m['recall_at_fpr_1%']:.3f}  CP@{metrics['k']} "
            f"{m['card_precision_at_k']:.3f}  alert rate {m['alert_rate']:.4f}"
        )
    for name, d in metrics["deltas_vs_champion"].items():
        a = d["auprc"]
        act = metrics["action_deltas_vs_champion"][name]
        print(
            f"{name} vs {metrics['champion']}: ΔAUPRC {a['delta']:+.3f} "
            f"[{a['ci_low']:+.3f}, {a['ci_high']:+.3f}]  Δalert rate "
            f"{act['alert_rate']['delta']:+.4f}  Δreviews {act['reviews']['delta']:+d}"
        )
    print(f"report written to {metrics['files']['html']}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="riskgraph",
        description="Real-time fraud scoring with a GNN over a streaming graph of payments, "
        "devices and social links.",
        epilog="Start with `riskgraph demo`: it generates data, trains, serves and reports.",
    )
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    g = sub.add_parser("generate", help="write a seeded synthetic event stream with fraud")
    g.add_argument("--out", required=True, help="output directory")
    g.add_argument("--seed", type=int, help="random seed (default 7)")
    g.add_argument("--accounts", type=int, help="number of accounts")
    g.add_argument("--days", type=int, help="days simulated")
    g.add_argument("--invalid-rate", type=float, help="share of deliberately malformed records")
    g.add_argument("--quiet", action="store_true", help="no progress bar")
    g.set_defaults(func=_cmd_generate)

    t = sub.add_parser("train", help="train the GNN and the tree baseline on a stream directory")
    t.add_argument("--stream", required=True, help="stream directory (from `generate`)")
    t.add_argument("--out", required=True, help="artifact directory to write")
    t.add_argument(
        "--config",
        help="JSON file of training settings (gnn.train.TrainConfig fields, e.g. "
        '{"tree_prior": true, "negative_rate": 1.0}); the options below override it',
    )
    t.add_argument("--epochs", type=int, help="training epochs (default 12)")
    t.add_argument("--seed", type=int, help="random seed (default 0)")
    t.add_argument(
        "--holdout-days",
        type=float,
        help="days at the end of the stream that training never reads (default 7)",
    )
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    t.set_defaults(func=_cmd_train)

    s = sub.add_parser(
        "serve",
        help="run the scoring API (RISKGRAPH_MODE=embedded: in-process stores; service: "
        "changelog window + Neo4j, Redis, Kafka)",
    )
    s.add_argument("--model", help="artifact directory (env RISKGRAPH_MODEL_DIR)")
    s.add_argument("--history", help="stream directory replayed into the graph at start-up")
    s.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1)")
    s.add_argument("--port", type=int, default=8000, help="port to listen on (8000)")
    s.set_defaults(func=_cmd_serve)

    d = sub.add_parser(
        "demo",
        help="generate → ingest → train → serve → replay over HTTP → summary, on embedded defaults",
    )
    d.add_argument("--out", help="also write the summary as JSON to this file")
    d.add_argument("--workdir", default="runs/demo", help="where data, model and logs go")
    d.add_argument("--seed", type=int, default=7, help="generator and training seed (7)")
    d.add_argument("--accounts", type=int, default=None, help="override the generator size")
    d.add_argument("--days", type=int, default=None, help="override the days simulated")
    d.add_argument("--epochs", type=int, default=12, help="GNN training epochs (12)")
    d.add_argument(
        "--max-api-payments",
        type=int,
        default=None,
        help="cap the payments replayed through the API (default: all)",
    )
    d.add_argument(
        "--concurrency",
        type=int,
        default=8,
        help="payments in flight over HTTP; payments sharing an account, card, device or IP "
        "are never in flight together (default: 8)",
    )
    d.add_argument("--quiet", action="store_true", help="no progress bars")
    d.set_defaults(func=_cmd_demo)

    pr = sub.add_parser(
        "produce",
        help="publish a stream directory to the Kafka source topics in event-time order "
        "(RISKGRAPH_KAFKA_BOOTSTRAP)",
    )
    pr.add_argument("--stream", required=True, help="stream directory (from `generate`)")
    rate = pr.add_mutually_exclusive_group()
    rate.add_argument("--rate", type=float, default=1000.0, help="events per second (1000)")
    rate.add_argument("--max", action="store_true", help="as fast as the broker takes them")
    pr.add_argument(
        "--topic-prefix", default=None, help="prefix of every topic name (RISKGRAPH_TOPIC_PREFIX)"
    )
    pr.add_argument(
        "--partitions",
        type=_at_least_one,
        default=None,
        help="create the topics that do not exist yet with N partitions (one stream worker "
        "per partition); default: the broker's",
    )
    pr.add_argument("--quiet", action="store_true", help="no progress bar")
    pr.set_defaults(func=_cmd_produce)

    st = sub.add_parser(
        "stream",
        help="run a stream worker: Kafka source topics → graph + feature stores → changelog "
        "(commits after the stores; SIGTERM finishes the batch)",
    )
    st.add_argument("--topic-prefix", default=None, help="prefix of every topic name")
    st.add_argument("--graph", choices=["neo4j", "memory"], default=None, help="graph store")
    st.add_argument("--features", choices=["redis", "memory"], default=None, help="features")
    st.add_argument("--namespace", default=None, help="Neo4j namespace / Redis prefix rg:<ns>:")
    st.add_argument("--instance-id", default=None, help="static group membership id")
    st.add_argument(
        "--partitions",
        type=_at_least_one,
        default=None,
        help="partitions of the topics this worker creates (RISKGRAPH_PARTITIONS, 1); run one "
        "worker per partition, each with its own --instance-id",
    )
    st.add_argument("--metrics-port", type=int, default=None, help="serve Prometheus metrics")
    st.set_defaults(func=_cmd_stream)

    c = sub.add_parser(
        "convert",
        help="turn a CSV of transactions (your own data) into a stream directory",
        description="Columns are named by a preset or a JSON column mapping (fields of "
        "feature_stream.tabular.ColumnMapping: timestamp, transaction_id, account, card, "
        "merchant, amount, and optionally device, ip, label, label_time, scenario). Rows that "
        "fail validation go to rejected.jsonl with the field at fault.",
    )
    c.add_argument("--input", required=True, help="CSV file (.csv or .csv.gz)")
    c.add_argument("--out", required=True, help="stream directory to write")
    c.add_argument("--preset", choices=["handbook"], help="a known data set's columns")
    c.add_argument("--mapping", help="JSON file with a column mapping")
    c.add_argument(
        "--label-delay-days",
        type=float,
        default=7.0,
        help="label time when the table has no label-time column: payment time + this",
    )
    c.add_argument("--quiet", action="store_true", help="no progress bar")
    c.set_defaults(func=_cmd_convert)

    b = sub.add_parser(
        "backtest",
        help="replay a stream (files or a Kafka time range) through ingest → features → model → "
        "decision policy in event time; champion vs challengers; HTML + JSON report",
    )
    src = b.add_mutually_exclusive_group(required=True)
    src.add_argument("--stream", help="stream directory (from `generate`)")
    src.add_argument(
        "--kafka-bootstrap",
        metavar="HOST:PORT",
        help="read the source topics from this Kafka cluster instead (see --from/--to)",
    )
    b.add_argument("--topic-prefix", default="", help="prefix of the Kafka source topics")
    b.add_argument(
        "--from",
        dest="from_time",
        metavar="ISO",
        help="Kafka: first produce time read (ISO 8601 with zone; default: topic start)",
    )
    b.add_argument(
        "--to",
        dest="to_time",
        metavar="ISO",
        help="Kafka: produce time where reading stops (default: the end at start-up)",
    )
    b.add_argument(
        "--model",
        action="append",
        required=True,
        metavar="NAME=DIR",
        help="artifact to score with; repeat for challengers (the first is the champion)",
    )
    b.add_argument(
        "--policy",
        action="append",
        default=[],
        metavar="NAME=PATH",
        help="decision policy of model NAME: a compiled bundle dir or a data.json override "
        "(other thresholds); default: the configured policy",
    )
    b.add_argument("--out", required=True, help="report directory (report.html/json, scores)")
    b.add_argument("--since", help="ISO 8601 start of the scored window")
    b.add_argument(
        "--last-days", type=float, help="score the last N days of the stream (default 7)"
    )
    b.add_argument("--until", help="ISO 8601 end of the scored window (default: stream end)")
    b.add_argument(
        "--label-delay-days",
        type=float,
        default=0.0,
        help="a label is visible no earlier than this long after its payment (default 0: "
        "from the label's own time)",
    )
    b.add_argument(
        "--retrain-every",
        metavar="DURATION",
        help="prequential: retrain a model every DURATION of event time (7d, 12h, …) from the "
        "window start, on the labels visible then",
    )
    b.add_argument(
        "--train-window",
        metavar="DURATION",
        help="retraining uses payments of the last DURATION only (default: all replayed)",
    )
    b.add_argument(
        "--retrain-model",
        metavar="NAME",
        help="model retrained on schedule (default: the last --model, the challenger)",
    )
    b.add_argument(
        "--train-config", metavar="FILE", help="JSON of gnn.train.TrainConfig fields for retraining"
    )
    b.add_argument(
        "--speed",
        type=float,
        help="replay the scored window at N× real time (default: as fast as possible)",
    )
    b.add_argument("--checkpoint", metavar="DIR", help="save progress here to resume after a stop")
    b.add_argument(
        "--checkpoint-every",
        type=int,
        default=50_000,
        metavar="N",
        help="save at the first chunk boundary after N more records (default 50000)",
    )
    b.add_argument("--resume", action="store_true", help="continue from --checkpoint DIR")
    b.add_argument(
        "--workers",
        type=int,
        default=1,
        metavar="N",
        help="score N equal slices of the window's event time in N processes, same results as "
        "one (files only; not with --retrain-every, --checkpoint or --speed; default 1)",
    )
    b.add_argument("--k", type=int, default=100, help="cards checked per day for CP@k")
    b.add_argument("--seed", type=int, default=0, help="seed of the bootstrap intervals")
    b.add_argument("--quiet", action="store_true", help="no progress bar")
    b.set_defaults(func=_cmd_backtest)

    k = sub.add_parser("keys", help="API keys for payment clients")
    ksub = k.add_subparsers(dest="keys_command", required=True, metavar="ACTION")
    kn = ksub.add_parser(
        "new",
        help="make a key; prints the registry entry (hashed with "
        "RISKGRAPH_AUTH_PEPPER) for RISKGRAPH_CLIENTS_FILE",
    )
    kn.add_argument("--id", required=True, help="client id")
    kn.add_argument("--tenant", required=True, help="the tenant every request is scored for")
    kn.add_argument("--roles", default="scorer", help="comma-separated (default scorer)")
    kn.add_argument(
        "--rate-tier",
        default="standard",
        help="the client's tier as the gate policy reports it: standard or premium (standard)",
    )
    kn.set_defaults(func=_cmd_keys_new)

    t = sub.add_parser("token", help="signed tokens for analysts (the review UI)")
    tsub = t.add_subparsers(dest="token_command", required=True, metavar="ACTION")
    tn = tsub.add_parser("new", help="print an analyst token signed with RISKGRAPH_TOKEN_SECRET")
    tn.add_argument("--user", required=True, help="analyst id")
    tn.add_argument("--tenant", required=True, help="the tenant whose cases the analyst sees")
    tn.add_argument(
        "--roles",
        default="analyst",
        help="comma-separated: analyst, senior_analyst, auditor, admin (default analyst)",
    )
    tn.add_argument("--ttl-hours", type=float, default=8.0, help="validity (default 8)")
    tn.set_defaults(func=_cmd_token_new)

    a = sub.add_parser("audit", help="audit log tools")
    asub = a.add_subparsers(dest="audit_command", required=True, metavar="ACTION")
    av = asub.add_parser(
        "verify", help="check a hash-chained audit log; names the first bad record"
    )
    av.add_argument("path", nargs="?", help="the log file (its .head anchor is checked too)")
    av.add_argument(
        "--kafka-topic",
        metavar="TOPIC",
        help="verify the copy on this Kafka audit topic instead (service mode)",
    )
    av.add_argument(
        "--bootstrap", help="Kafka bootstrap servers (default: RISKGRAPH_KAFKA_BOOTSTRAP)"
    )
    av.set_defaults(func=_cmd_audit_verify)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    tune_collector()  # every command builds or replays into the in-memory stores
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format='{"t":"%(asctime)s","level":"%(levelname)s",'
        '"logger":"%(name)s","msg":"%(message)s"}',
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one INFO line per request otherwise
    logging.getLogger("faiss.loader").setLevel(logging.WARNING)  # eight lines at each import
    try:
        return int(args.func(args))
    except (ConfigFileError, OptionError) as exc:
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
