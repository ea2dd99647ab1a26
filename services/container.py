"""Wires the ports for one process from :class:`~services.settings.Settings`."""

from __future__ import annotations

import logging
import math
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from feature_stream.event_io import EventSink, FileEventSink
from feature_stream.feature_memory import InMemoryFeatureStore
from feature_stream.feature_store import FeatureStore
from feature_stream.graph_memory import InMemoryGraphStore
from feature_stream.graph_store import GraphStore
from feature_stream.ingest import Ingestor
from gnn.artifact import ModelBundle, load_artifact
from gnn.engine import ScoringEngine, set_math_threads
from gnn.engine_process import EngineProcess, MirroredIngestor, RungRouter
from services.audit import AuditSink, FileAuditSink, head_path
from services.auth import ApiKeyRegistry, Authenticator, dev_client_entry
from services.cases.review import ReviewService
from services.cases.similar import SimilarCaseIndex
from services.cases.store import CaseStore
from services.cases.store_sqlite import SqliteCaseStore
from services.heap import Refreezer, settle_heap
from services.idempotency import IdempotencyCache
from services.policy import PolicyEvaluator
from services.scoring import ScoringService
from services.settings import Settings, case_db

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from feature_stream.graph_window import WindowedGraphStore

log = logging.getLogger("riskgraph.container")


@dataclass
class Container:
    settings: Settings
    graph: GraphStore
    features: FeatureStore
    dead_letters: EventSink
    ingestor: Ingestor
    policy: PolicyEvaluator
    audit: AuditSink
    bundle: ModelBundle
    scoring: ScoringService
    auth: Authenticator
    review: ReviewService
    inference: EngineProcess | None = None  # RISKGRAPH_INFERENCE_PROCESS
    # The API calls its quiet_point between requests (RISKGRAPH_HEAP_REFREEZE_S).
    refreezer: Refreezer = field(default_factory=lambda: Refreezer(0.0))

    def register_metrics(self, registry: CollectorRegistry) -> None:
        """Add the stores' own metrics (the service-mode window's sample counts) to the API's
        registry; :func:`~services.api.app.create_app` calls it once."""
        from feature_stream.graph_window import WindowedGraphStore, WindowMetrics

        if isinstance(self.graph, WindowedGraphStore):
            registry.register(WindowMetrics(self.graph))

    def not_ready(self) -> list[str]:
        """Why the API should take no traffic now (empty: ready): in service mode, a graph
        window whose changelog follower has stopped."""
        from feature_stream.graph_window import WindowedGraphStore

        return self.graph.not_ready() if isinstance(self.graph, WindowedGraphStore) else []

    def close(self) -> None:
        self.scoring.close()  # answer what is queued before closing what it writes to
        if self.inference is not None:
            self.inference.close()
        self.review.index.save(index_dir(self.settings))
        self.review.close()
        self.audit.close()
        self.policy.close()
        try:  # the graph's publisher may dead-letter what the broker refused at its close
            self.graph.close()
            self.features.close()
        finally:
            self.dead_letters.close()


def resolve_device(name: str) -> str:
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return name


def build_container(
    settings: Settings,
    *,
    bundle: ModelBundle | None = None,
    graph: GraphStore | None = None,
    features: FeatureStore | None = None,
    audit: AuditSink | None = None,
    dead_letters: EventSink | None = None,
    policy: PolicyEvaluator | None = None,
    cases: CaseStore | None = None,
) -> Container:
    """Build every port; any of them can be passed in (tests, the demo's warm stores).

    Stores not passed in are the backends ``settings`` names. In service mode the graph is a
    :class:`~feature_stream.graph_window.WindowedGraphStore`: this returns only once its window
    has read the graph changelog to the end (the process is then ready), and the events fused
    here are published to Kafka for the stream workers rather than written to Neo4j.
    """
    bundle = bundle if bundle is not None else load_artifact(settings.model_dir)
    dead_letters = (
        dead_letters if dead_letters is not None else FileEventSink(settings.dead_letter_path)
    )
    if graph is None or features is None:
        graph, features = build_stores(settings, graph, features, undelivered=dead_letters)
    ingestor = MirroredIngestor(graph, features, dead_letters)
    if settings.history_dir is not None and graph.stats()["edges"] == 0:
        from feature_stream.event_io import FileEventSource

        ingestor.run(FileEventSource(settings.history_dir))
    policy = policy if policy is not None else build_policy(settings)
    audit = audit if audit is not None else build_audit(settings)
    if settings.torch_threads > 0:
        set_math_threads(settings.torch_threads)
    engine_kw: dict[str, Any] = {
        "device": resolve_device(settings.device),
        "reduced_fanouts": settings.reduced_fanouts,
        "cache_size": settings.embedding_cache_size,
    }
    engine = ScoringEngine(bundle, graph, features, **engine_kw)
    inference = None
    if settings.inference_process and settings.mode == "embedded":
        # The same engine in a child process; this one stays for explanations.
        inference = EngineProcess(
            bundle,
            graph,
            features,
            **engine_kw,
            torch_threads=settings.torch_threads,
            on_loaded=settle_heap,
            on_quiet=Refreezer(settings.heap_refreeze_s).quiet_point,
        )
        ingestor.mirror = inference  # from now on every applied event reaches the child too
    elif settings.inference_process:
        log.warning("inference_process is ignored in service mode (embedded mode only)")
    scoring = ScoringService(
        engine,
        ingestor,
        policy,
        audit,
        settings.audit_secret,
        shadow_baseline=settings.shadow_baseline,
        region=settings.region,
        idempotency=IdempotencyCache(ttl_s=settings.idempotency_ttl_s),
        batch_max_size=settings.batch_max_size,
        batch_max_wait_ms=settings.batch_max_wait_ms,
        queue_capacity=settings.queue_capacity,
        deadline_margin_ms=settings.deadline_margin_ms,
        rungs=settings.ladder,
        shed_on_deadline=settings.shed_on_deadline,
        gate_ttl_s=settings.gate_ttl_s,
        infer=RungRouter(engine, inference).infer if inference is not None else None,
    )
    cases = cases if cases is not None else build_cases(settings)
    review = ReviewService(
        cases,
        similar_index(cases, engine.embedding_dim, index_dir(settings)),
        policy,
        audit,
        scoring,
        settings.audit_secret,
        k=settings.similar_cases_k,
    )
    scoring.cases = review
    if settings.mode == "service":
        review.publish_labels_to(label_sink(settings, graph))
    return Container(
        settings,
        graph,
        features,
        dead_letters,
        ingestor,
        policy,
        audit,
        bundle,
        scoring,
        build_authenticator(settings),
        review,
        inference,
        Refreezer(settings.heap_refreeze_s),
    )


def build_run_container(
    workdir: Path,
    bundle: ModelBundle,
    graph: GraphStore,
    features: FeatureStore,
    **settings: Any,
) -> Container:
    """A container over stores already loaded in this process (the demo, the benchmarks),
    with a fresh audit log, dead-letter file and case store in ``workdir``; then
    :func:`settle_heap`.

    ``settings`` are :class:`Settings` fields on top of the two file paths."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    audit_path, dead_path = workdir / "audit.log", workdir / "dead-letters.jsonl"
    case_path = workdir / "cases.sqlite"
    for old in (audit_path, head_path(audit_path), dead_path, case_path):
        old.unlink(missing_ok=True)
    shutil.rmtree(case_path.with_suffix(".faiss"), ignore_errors=True)
    graph.expect_queries_from(math.inf)  # the API scores at the newest event from now on
    container = build_container(
        Settings(
            audit_path=audit_path, dead_letter_path=dead_path, case_db_path=case_path, **settings
        ),
        bundle=bundle,
        graph=graph,
        features=features,
        audit=FileAuditSink(audit_path),
        dead_letters=FileEventSink(dead_path),
    )
    settle_heap()
    return container


def similar_index(cases: CaseStore, dim: int, directory: Path | None = None) -> SimilarCaseIndex:
    """The similar-case index over every resolved case in the store: the copy saved in
    ``directory`` at the last shutdown when there is a usable one (rebuilding a million-case
    HNSW takes minutes), caught up with any verdict it missed; else built from the store."""
    index = None
    if directory is not None and directory.is_dir():
        try:
            index = SimilarCaseIndex.load(directory)
        except (OSError, ValueError, RuntimeError) as exc:
            log.warning("similar-case index in %s unusable (%s); rebuilding", directory, exc)
        if index is not None and index.dim != dim:
            log.warning(
                "similar-case index in %s has dim %d, model %d; rebuilding",
                directory,
                index.dim,
                dim,
            )
            index = None
    if index is None:
        index = SimilarCaseIndex(dim)
    index.add_from(cases)
    return index


def index_dir(settings: Settings) -> Path:
    """Where the similar-case index is saved at shutdown: beside the case store."""
    return case_db(settings).with_suffix(".faiss")


def build_stores(
    settings: Settings,
    graph: GraphStore | None = None,
    features: FeatureStore | None = None,
    *,
    undelivered: EventSink | None = None,
) -> tuple[GraphStore, FeatureStore]:
    """The graph and feature stores ``settings`` names, except those passed in.
    ``undelivered`` takes, as dead letters, events the service-mode window could not publish.

    Backends are built as the stream worker builds them (:func:`feature_stream.stream_app.
    build_stores`, same ``RISKGRAPH_*`` settings); in service mode the graph is the changelog
    window in front of Neo4j (``graph_backend="neo4j"``) or alone (``"memory"``).
    """
    wanted_graph = settings.graph_backend if graph is None else "memory"
    wanted_features = settings.feature_backend if features is None else "memory"
    if wanted_graph == wanted_features == "memory":
        built: tuple[GraphStore, FeatureStore] = (InMemoryGraphStore(), InMemoryFeatureStore())
    else:
        from feature_stream.stream_app import StreamConfig
        from feature_stream.stream_app import build_stores as build_backends

        built = build_backends(
            StreamConfig(
                kafka_bootstrap=settings.kafka_bootstrap,
                topic_prefix=settings.topic_prefix,
                graph_backend=wanted_graph,
                feature_backend=wanted_features,
                neo4j_uri=settings.neo4j_uri,
                neo4j_user=settings.neo4j_user,
                neo4j_password=settings.neo4j_password,
                redis_url=settings.redis_url,
                namespace=settings.namespace,
            )
        )
    features = features if features is not None else built[1]
    if graph is not None:
        return graph, features
    if settings.mode != "service":
        return built[0], features
    try:
        durable = built[0] if wanted_graph == "neo4j" else None
        return open_window(settings, durable, undelivered), features
    except BaseException:
        built[0].close()
        features.close()
        raise


def open_window(
    settings: Settings, durable: GraphStore | None, undelivered: EventSink | None = None
) -> GraphStore:
    """The service-mode graph: the changelog window (caught up) in front of ``durable``,
    publishing what this process fuses to the source topics."""
    import asyncio

    from feature_stream.graph_window import WindowedGraphStore
    from feature_stream.kafka_io import KafkaEventSink, all_topics, ensure_topics

    # The follower needs the changelog to exist; the worker creates the same topics.
    asyncio.run(ensure_topics(settings.kafka_bootstrap, all_topics(settings.topic_prefix)))
    publish = KafkaEventSink(
        settings.kafka_bootstrap, prefix=settings.topic_prefix, client_id="riskgraph-api"
    )
    try:
        return WindowedGraphStore.open(
            settings.kafka_bootstrap,
            settings.topic_prefix,
            durable=durable,
            window_s=settings.window_days * 86400.0,
            publish=publish,
            undelivered=undelivered,
            catch_up_timeout_s=settings.window_catch_up_s,
        )
    except BaseException:
        publish.close()
        raise


def build_cases(settings: Settings) -> CaseStore:
    """The case store ``settings.case_backend`` names."""
    if settings.case_backend == "neo4j":
        from services.cases.store_neo4j import Neo4jCaseStore

        auth = (settings.neo4j_user, settings.neo4j_password or "") if settings.neo4j_user else None
        return Neo4jCaseStore(settings.neo4j_uri, auth=auth, namespace=settings.namespace)
    return SqliteCaseStore(case_db(settings))


class _PublishedWithTheEvent(EventSink):
    """The review service's label sink when the graph publishes every event it fuses (the
    service-mode window): the label is already sent, ``flush`` waits for its acknowledgement."""

    def __init__(self, graph: WindowedGraphStore) -> None:
        self.graph = graph

    def send(self, record: dict[str, Any]) -> None:
        pass

    def flush(self) -> None:
        self.graph.flush()

    def close(self) -> None:
        pass  # the graph owns the producer


def label_sink(settings: Settings, graph: GraphStore) -> EventSink:
    """Where verdict labels go in service mode: the labels topic, exactly once per label."""
    from feature_stream.graph_window import WindowedGraphStore

    if isinstance(graph, WindowedGraphStore) and graph.publisher is not None:
        return _PublishedWithTheEvent(graph)
    from feature_stream.kafka_io import KafkaEventSink

    return KafkaEventSink(
        settings.kafka_bootstrap, prefix=settings.topic_prefix, client_id="riskgraph-review"
    )


def build_audit(settings: Settings) -> AuditSink:
    """The file log; in service mode also mirrored to the Kafka audit topic."""
    if settings.mode == "service":
        from services.audit_kafka import KafkaAuditSink

        return KafkaAuditSink(settings.audit_path, settings.kafka_bootstrap, settings.audit_topic)
    return FileAuditSink(settings.audit_path)


def build_policy(settings: Settings) -> PolicyEvaluator:
    """The policy evaluator named by ``settings.policy_backend``."""
    from services.policy_opa import OpaServerPolicy, WasmPolicy

    if settings.policy_backend == "wasm":
        return WasmPolicy()
    return OpaServerPolicy(settings.opa_url)


def build_authenticator(settings: Settings) -> Authenticator:
    """Payment clients from ``clients_file`` plus, in development, the dev client."""
    entries = []
    if settings.clients_file is not None:
        import json

        data = json.loads(settings.clients_file.read_text())
        entries += data["clients"] if isinstance(data, dict) else data
    if settings.dev_api_key is not None:
        entries.append(dev_client_entry(settings.dev_api_key, settings.auth_pepper))
    return Authenticator(ApiKeyRegistry(entries, settings.auth_pepper), settings.token_secret)
