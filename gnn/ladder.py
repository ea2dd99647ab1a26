"""The degradation ladder: which model path can answer a request inside its remaining budget.

Rungs, best first (each is cheaper and coarser than the one before):

========== ============ ===================================================================
rung       served_by    what runs
========== ============ ===================================================================
full       gnn          sample with the artifact's fan-outs, GNN forward
reduced    gnn          sample with reduced fan-outs (default ``(5, 3)``), same GNN
cached     gnn          GNN over the query and its own 1-hop entities only, entity
                        embeddings taken from earlier full passes (see
                        :class:`gnn.engine.EmbeddingCache`)
tree       baseline     tree model on the online features, no sampling
policy     policy       no model: a rule score from the online features (the fraud rate,
                        on the training window, of the worst feature rule that fires; see
                        :func:`gnn.reasons.rule_score`), then the policy
========== ============ ===================================================================

The choice is a pure function of the remaining budget and the cost estimates
(:func:`choose_rung`); :class:`StageCosts` keeps those estimates from measured batches.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Literal

Rung = Literal["full", "reduced", "cached", "tree", "policy"]
LADDER: tuple[Rung, ...] = ("full", "reduced", "cached", "tree", "policy")
SERVED_BY: dict[Rung, str] = {
    "full": "gnn",
    "reduced": "gnn",
    "cached": "gnn",
    "tree": "baseline",
    "policy": "policy",
}
# Per-item cost priors (ms) before anything is measured; measurements replace them quickly.
PRIOR_ITEM_MS: dict[Rung, float] = {
    "full": 4.0,
    "reduced": 2.0,
    "cached": 1.0,
    "tree": 0.3,
    "policy": 0.05,
}
PRIOR_TAIL_MS = 0.4


def choose_rung(
    remaining_ms: float,
    estimates_ms: Mapping[Rung, float],
    margin_ms: float = 0.0,
    enabled: Iterable[Rung] = LADDER,
) -> Rung:
    """The best enabled rung whose estimated cost fits the budget; ``"policy"`` if none does.

    Args:
        remaining_ms: time left until the request's deadline (may be ≤ 0).
        estimates_ms: estimated milliseconds from now until the answer is ready on each rung
            (a rung missing from the mapping is not considered).
        margin_ms: kept back for what follows the answer (response serialisation, jitter).
        enabled: rungs allowed, in ladder order (e.g. without ``"cached"`` when no cache).

    A rung is chosen when ``estimates_ms[rung] + margin_ms <= remaining_ms``. The policy rung
    is the floor: it is returned even when the budget is already spent, so every request
    that reached the worker gets an answer that names the rung that served it.
    """
    for rung in enabled:
        est = estimates_ms.get(rung)
        if est is not None and est + margin_ms <= remaining_ms:
            return rung
    return "policy"


def size_bucket(n: int) -> int:
    """Histogram bucket of a batch size: ``floor(log2(n))`` (1 → 0, 2–3 → 1, 4–7 → 2, …)."""
    return max(1, n).bit_length() - 1


class StageCosts:
    """Measured per-item cost of each rung by batch-size bucket, and of the per-item tail.

    For each rung and each batch-size bucket (:func:`size_bucket`) it keeps an exponentially
    weighted mean and mean absolute deviation of *milliseconds per item* (a batch of ``n``
    that took ``t`` ms is one observation of ``t / n``). The estimate for ``n`` items is
    ``n · (mean + k · deviation)``, as TCP's retransmission timeout: a p99-ish bound, not a
    mean, because the deadline is a tail contract. An unmeasured bucket borrows the nearest
    smaller measured one (per-item cost falls with batch size, so that is conservative), else
    the nearest larger one, else the prior. The tail (decision policy + ingest + audit) is
    per item, whatever the rung.

    Estimates of a rung that goes unused decay by ``decay`` per batch, so one slow batch does
    not pin every later request below that rung: the estimate falls until the rung is tried
    again and measured.

    Not thread-safe: the inference worker is its only writer and reader.
    """

    def __init__(self, alpha: float = 0.1, k: float = 2.0, decay: float = 0.98) -> None:
        self.alpha, self.k, self.decay = alpha, k, decay
        self._mean: dict[Rung, dict[int, float]] = {r: {} for r in LADDER}
        self._dev: dict[Rung, dict[int, float]] = {r: {} for r in LADDER}
        self.tail_mean, self.tail_dev = PRIOR_TAIL_MS, 0.0

    def observe(self, rung: Rung, n: int, ms: float) -> None:
        """A batch of ``n`` items took ``ms`` milliseconds on ``rung``."""
        if n < 1:
            return
        b, x = size_bucket(n), ms / n
        means, devs = self._mean[rung], self._dev[rung]
        if b not in means:
            means[b], devs[b] = x, x / 4
            return
        devs[b] += self.alpha * (abs(x - means[b]) - devs[b])
        means[b] += self.alpha * (x - means[b])

    def observe_tail(self, ms_per_item: float) -> None:
        self.tail_dev += self.alpha * (abs(ms_per_item - self.tail_mean) - self.tail_dev)
        self.tail_mean += self.alpha * (ms_per_item - self.tail_mean)

    def decay_unused(self, used: Iterable[Rung]) -> None:
        """Let the estimates of rungs not used in the last batch fall back toward zero."""
        keep = set(used)
        for rung in LADDER:
            if rung not in keep:
                for table in (self._mean[rung], self._dev[rung]):
                    for b in table:
                        table[b] *= self.decay

    def item_ms(self, rung: Rung, n: int) -> float:
        """Estimated milliseconds per item on ``rung`` in a batch of ``n``."""
        means, devs = self._mean[rung], self._dev[rung]
        if not means:
            return PRIOR_ITEM_MS[rung]
        b = size_bucket(n)
        below = [x for x in means if x <= b]
        pick = max(below) if below else min(means)
        return means[pick] + self.k * devs[pick]

    def estimates(self, n: int) -> dict[Rung, float]:
        """Milliseconds until a batch of ``n`` is answered if all of it ran on each rung."""
        tail = n * (self.tail_mean + self.k * self.tail_dev)
        return {r: n * self.item_ms(r, n) + tail for r in LADDER}

    def snapshot(self) -> dict[str, dict[int, float]]:
        """Current per-item estimates (ms) by rung and bucket, for /readyz and benchmarks."""
        return {
            r: {b: round(self._mean[r][b] + self.k * self._dev[r][b], 4) for b in self._mean[r]}
            for r in LADDER
        }
