"""A tiny synthetic world with a planted fraud ring, shared by the model and tensor tests."""

from __future__ import annotations

import random
from dataclasses import dataclass

import pytest
import torch

from feature_stream.event_io import InMemoryEventSink
from feature_stream.events import LabelEvent, Payment
from feature_stream.feature_memory import InMemoryFeatureStore
from feature_stream.graph_memory import InMemoryGraphStore
from feature_stream.graph_store import Subgraph
from feature_stream.ingest import Ingestor
from gnn.engine import Prepared, prepare
from tests.factories import label, login, payment

# Test graphs are tiny: on a busy 2-core machine a second intra-op thread only adds start-up
# stalls of seconds to the first forward and backward passes.
torch.set_num_threads(1)

FANOUTS = (5, 3)  # small neighbourhoods keep training on 2 cores to a second or two


@dataclass
class World:
    """Stores holding the whole stream, its payments, their targets and point-in-time inputs."""

    graph: InMemoryGraphStore
    features: InMemoryFeatureStore
    payments: list[Payment]
    y: list[int]
    prepared: Prepared

    @property
    def rows(self) -> list[list[float]]:
        return [list(f.values) for f in self.prepared.features]


def build_world(seed: int = 0) -> World:
    """20 honest accounts with their own devices and 5 ring accounts sharing one device and IP;
    ring payments are fraud, confirmed by chargebacks two hours later."""
    rng = random.Random(seed)
    events: list[Payment | LabelEvent] = []
    logins = []
    accounts = [(f"u{i}", f"dev-u{i}", f"10.0.1.{i}", False) for i in range(20)]
    accounts += [(f"r{i}", "dev-farm", "10.6.6.6", True) for i in range(5)]
    y: dict[str, int] = {}
    for acct, dev, ip, ring in accounts:
        logins.append(login(f"login-{acct}", rng.uniform(0, 3600), account=acct, device=dev, ip=ip))
        for k in range(rng.randint(4, 6)):
            t = rng.uniform(3600, 2 * 86400)
            p = payment(
                f"{acct}-p{k}",
                t,
                account=acct,
                card=f"card-{acct}",
                merchant=f"m{rng.randint(0, 2) if ring else rng.randint(0, 9)}",
                amount=round(rng.uniform(300, 900) if ring else rng.uniform(5, 120), 2),
                device=dev,
                ip=ip,
            )
            events.append(p)
            y[p.event_id] = int(ring)
            if ring:
                events.append(label(f"lb-{p.event_id}", t + 7200, txn=p, fraud=True))
    stream = sorted([*logins, *events], key=lambda e: (e.event_time, e.type != "payment"))
    ingestor = Ingestor(InMemoryGraphStore(), InMemoryFeatureStore(), InMemoryEventSink())
    for e in stream:
        ingestor.apply(e)
    pays = [e for e in stream if isinstance(e, Payment)]
    graph, features = ingestor.graph, ingestor.features
    assert isinstance(graph, InMemoryGraphStore)
    assert isinstance(features, InMemoryFeatureStore)
    return World(
        graph,
        features,
        pays,
        [y[p.event_id] for p in pays],
        prepare(pays, graph, features, FANOUTS),
    )


@pytest.fixture(scope="session")
def world() -> World:
    return build_world()


def rebuilt(g: Subgraph, nodes: list[int], edges: list[int]) -> Subgraph:
    """``g`` keeping the nodes ``nodes`` (new index → old index) and the edges ``edges``, in
    those orders; edge ends are renumbered."""
    new = {old: i for i, old in enumerate(nodes)}
    return Subgraph(
        t=g.t,
        node_type=[g.node_type[i] for i in nodes],
        node_id=[g.node_id[i] for i in nodes],
        node_attr=[g.node_attr[i] for i in nodes],
        node_hop=[g.node_hop[i] for i in nodes],
        src=[new[g.src[e]] for e in edges],
        dst=[new[g.dst[e]] for e in edges],
        rel=[g.rel[e] for e in edges],
        edge_ts=[g.edge_ts[e] for e in edges],
        max_time_used=g.max_time_used,
    )
