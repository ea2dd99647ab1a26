"""Wires the ports for one process from :class:`~services.settings.Settings`."""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from feature_stream.event_io import EventSink, FileEventSink
from feature_stream.feature_memory import InMemoryFeatureStore
from feature_stream.feature_store import FeatureStore
from feature_stream.graph_memory import InMemoryGraphStore
from feature_stream.graph_store import GraphStore
from feature_stream.ingest import Ingestor
from gnn.artifact import ModelBundle, load_artifact
from gnn.engine import ScoringEngine
from services.audit import AuditSink, FileAuditSink, head_path
from services.auth import ApiKeyRegistry, Authenticator, dev_client_entry
from services.cases.review import ReviewService
from services.cases.similar import SimilarCaseIndex
from services.cases.store import CaseStore
from services.cases.store_sqlite import SqliteCaseStore
from services.idempotency import IdempotencyCache
from services.policy import PolicyEvaluator
from services.scoring import ScoringService
from services.settings import Settings, case_db

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

    def close(self) -> None:
        self.scoring.close()  # answer what is queued before closing what it writes to
        self.review.index.save(index_dir(self.settings))
        self.review.close()
        self.audit.close()
        self.policy.close()
        self.dead_letters.close()
        self.graph.close()
        self.features.close()


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
    """Build every port; any of them can be passed in (tests, the demo's warm stores)."""
    if settings.mode != "embedded" and (graph is None or features is None):
        raise NotImplementedError(
            "service mode backends (Neo4j, Redis) are wired by the "
            "streaming deployment; pass graph= and features="
        )
    graph = graph if graph is not None else InMemoryGraphStore()
    features = features if features is not None else InMemoryFeatureStore()
    dead_letters = (
        dead_letters if dead_letters is not None else FileEventSink(settings.dead_letter_path)
    )
    ingestor = Ingestor(graph, features, dead_letters)
    if settings.history_dir is not None and graph.stats()["edges"] == 0:
        from feature_stream.event_io import FileEventSource

        ingestor.run(FileEventSource(settings.history_dir))
    bundle = bundle if bundle is not None else load_artifact(settings.model_dir)
    policy = policy if policy is not None else build_policy(settings)
    audit = audit if audit is not None else build_audit(settings)
    if settings.torch_threads > 0:
        torch.set_num_threads(settings.torch_threads)
    engine = ScoringEngine(
        bundle,
        graph,
        features,
        device=resolve_device(settings.device),
        reduced_fanouts=settings.reduced_fanouts,
        cache_size=settings.embedding_cache_size,
    )
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
    )
    cases = cases if cases is not None else SqliteCaseStore(case_db(settings))
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
        from feature_stream.kafka_io import KafkaEventSink

        review.publish_labels_to(
            KafkaEventSink(
                settings.kafka_bootstrap, prefix=settings.topic_prefix, client_id="riskgraph-review"
            )
        )
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
    :func:`freeze_heap`.

    ``settings`` are :class:`Settings` fields on top of the two file paths."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    audit_path, dead_path = workdir / "audit.log", workdir / "dead-letters.jsonl"
    case_path = workdir / "cases.sqlite"
    for old in (audit_path, head_path(audit_path), dead_path, case_path):
        old.unlink(missing_ok=True)
    shutil.rmtree(case_path.with_suffix(".faiss"), ignore_errors=True)
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
    freeze_heap()
    return container


def freeze_heap() -> None:
    """Move everything allocated so far (the loaded graph and feature stores: millions of
    objects) out of the garbage collector's reach: a full collection over them stalls every
    request for seconds. Call once, after loading history and before serving."""
    import gc

    gc.collect()
    gc.freeze()


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
