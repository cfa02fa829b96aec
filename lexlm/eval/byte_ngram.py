"""A byte n-gram count model: the bits-per-byte reference that needs no training.

Interpolated Witten-Bell smoothing (Witten & Bell, 1991) over UTF-8 bytes, order n (n - 1
bytes of context), fitted by counting the training bytes:

    p_0(b) = 1 / 256
    p_k(b | h) = (c(h, b) + u(h) p_{k-1}(b | h')) / (c(h) + u(h))

where h is the last k bytes, h' its last k - 1, c the counts, and u(h) the number of distinct
bytes seen after h (a context never seen falls through to the shorter one). Every document is
scored from its start (no context carried across documents), every byte included. It is a
floor that any trained byte-level LM should beat; a model above it has learned less than
counting does.
"""

from __future__ import annotations

import collections
import math
from collections.abc import Iterable


class ByteNgram:
    def __init__(self, order: int = 3):
        if order < 1:
            raise ValueError(f"order: must be >= 1, got {order}")
        self.order = order
        # counts[k][context bytes (len k)] -> Counter of next byte
        self.counts = [collections.defaultdict(collections.Counter) for _ in range(order)]
        self.sizes: list[dict] = [{} for _ in range(order)]

    def fit(self, documents: Iterable[str]) -> ByteNgram:
        for doc in documents:
            raw = doc.encode("utf-8", errors="replace")
            for k in range(self.order):
                table = self.counts[k]
                for i in range(k, len(raw)):
                    table[raw[i - k : i]][raw[i]] += 1
        # per context: (total count, distinct followers), so scoring never re-sums a Counter
        self.sizes = [
            {h: (sum(c.values()), len(c)) for h, c in table.items()} for table in self.counts
        ]
        return self

    def prob(self, context: bytes, b: int, order: int | None = None) -> float:
        """p(b | the last order - 1 bytes of context) (``order`` <= the fitted order)."""
        p = 1.0 / 256
        for k in range(min(order or self.order, self.order)):
            if k > len(context):
                break
            h = context[len(context) - k :] if k else b""
            seen = self.counts[k].get(h)
            if not seen:
                continue
            total, distinct = self.sizes[k][h]
            p = (seen.get(b, 0) + distinct * p) / (total + distinct)
        return p

    def bits(self, documents: Iterable[str], order: int | None = None) -> tuple[float, int]:
        """(total bits, bytes) of the documents, each scored from its start."""
        order = min(order or self.order, self.order)
        total, n = 0.0, 0
        for doc in documents:
            raw = doc.encode("utf-8", errors="replace")
            for i, b in enumerate(raw):
                total -= math.log2(self.prob(raw[max(0, i - order + 1) : i], b, order))
            n += len(raw)
        return total, n


def bits_per_byte(train: Iterable[str], test: Iterable[str], order: int = 3) -> dict:
    """{'bits_per_byte', 'n_bytes', 'order'} of a byte n-gram fitted on ``train``."""
    model = ByteNgram(order).fit(train)
    total, n = model.bits(test)
    return {"bits_per_byte": total / n if n else float("nan"), "n_bytes": n, "order": order}


ORDER_LIMIT = 16  # the grid is never extended past this order


def select_and_score(
    train: list[str],
    validation: list[str],
    test: list[str],
    max_order: int = 5,
    limit: int = ORDER_LIMIT,
) -> dict:
    """Picks the order with the lowest validation bits per byte and scores the test split with
    it (select on dev, report test).

    The grid starts at orders 1..``max_order`` and is extended one order at a time while its
    largest order is the best on validation, until validation turns (an order is worse than
    the one before it) or ``limit``: a selected order at the edge of the grid would say only
    that the grid was too small. Returns {'bits_per_byte', 'n_bytes', 'order',
    'validation_bits_per_byte', 'validation_bits_per_byte_by_order', 'turned' (whether
    validation turned within the limit), 'test_bits_per_byte_by_order'} (every order's test
    bits: a diagnostic, never selected on)."""
    top = max_order
    model = ByteNgram(top).fit(train)
    dev: dict[int, float] = {}

    def score_dev(k):
        total, n = model.bits(validation, k)
        dev[k] = total / n if n else float("inf")

    for k in range(1, top + 1):
        score_dev(k)
    while min(dev, key=dev.get) == top and top < limit:
        top += 1
        model = ByteNgram(top).fit(train)
        score_dev(top)
    order = min(dev, key=dev.get)
    turned = order < top
    test_bits = {}
    for k in range(1, top + 1):
        total, n = model.bits(test, k)
        test_bits[k] = total / n if n else float("nan")
    return {
        "bits_per_byte": test_bits[order],
        "n_bytes": n,
        "order": order,
        "validation_bits_per_byte": dev[order],
        "validation_bits_per_byte_by_order": {str(k): v for k, v in dev.items()},
        "turned": turned,
        "test_bits_per_byte_by_order": {str(k): v for k, v in test_bits.items()},
    }


__all__ = ["ByteNgram", "bits_per_byte", "select_and_score"]
