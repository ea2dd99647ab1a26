"""The shape of the fused heterogeneous temporal graph: node types and relations.

Edges are stored undirected (both ends know them) and carry their event time. A relation name
is the same from both ends; PyG edge types are ``(src_type, relation, dst_type)`` triples where
messages flow from the node sampled later (further from the scored transaction) to the earlier.
"""

from __future__ import annotations

NODE_TYPES: tuple[str, ...] = ("transaction", "account", "card", "merchant", "device", "ip")
NODE_TYPE_CODE: dict[str, int] = {name: i for i, name in enumerate(NODE_TYPES)}
TXN, ACCOUNT, CARD, MERCHANT, DEVICE, IP = range(len(NODE_TYPES))

# relation name → the two node types it joins
RELATIONS: dict[str, tuple[int, int]] = {
    # payment subgraph
    "paid_by": (TXN, ACCOUNT),
    "paid_with": (TXN, CARD),
    "paid_at": (TXN, MERCHANT),
    # device subgraph
    "paid_from_device": (TXN, DEVICE),
    "paid_from_ip": (TXN, IP),
    "logged_in_on": (ACCOUNT, DEVICE),
    "logged_in_from": (ACCOUNT, IP),
    # social subgraph (account–account)
    "p2p": (ACCOUNT, ACCOUNT),
    "contact": (ACCOUNT, ACCOUNT),
    "shared_identity": (ACCOUNT, ACCOUNT),  # shared phone or address
}
RELATION_NAMES: tuple[str, ...] = tuple(RELATIONS)
RELATION_CODE: dict[str, int] = {name: i for i, name in enumerate(RELATION_NAMES)}

SOCIAL_KIND_RELATION: dict[str, str] = {
    "p2p_transfer": "p2p",
    "contact": "contact",
    "shared_phone": "shared_identity",
    "shared_address": "shared_identity",
}

CHANNELS: tuple[str, ...] = ("card_present", "ecommerce", "p2p")
CHANNEL_CODE: dict[str, int] = {c: i for i, c in enumerate(CHANNELS)}


def message_edge_types() -> list[tuple[str, str, str]]:
    """Every ``(src_type, relation, dst_type)`` triple a sampled subgraph can contain."""
    out: list[tuple[str, str, str]] = []
    for rel, (a, b) in RELATIONS.items():
        out.append((NODE_TYPES[a], rel, NODE_TYPES[b]))
        if a != b:
            out.append((NODE_TYPES[b], rel, NODE_TYPES[a]))
    return out
