"""Class counts and the balance score: the statistics that sampling reports and balancing optimises.

Kept apart from both so `sampling` (which reports them) and `balance` (which builds on sampling)
import it without importing each other.
"""

from __future__ import annotations

from typing import Hashable, Iterable, Sequence

import numpy as np


def class_counts(labels: Iterable[Hashable], classes: Sequence[Hashable] | None = None) -> dict[Hashable, int]:
    """Items per class (classes listed in `classes` but absent count 0), sorted by class."""
    counts: dict[Hashable, int] = {c: 0 for c in (classes or [])}
    for v in labels:
        counts[v] = counts.get(v, 0) + 1
    return dict(sorted(counts.items(), key=lambda kv: str(kv[0])))


def class_size_std(labels: Iterable[Hashable], classes: Sequence[Hashable] | None = None) -> float:
    """Population std of the class sizes: the papers' balance score (0 = perfectly balanced).

    Pass `classes` (all classes of the full dataset) so a class the selection missed counts as 0."""
    counts = np.array(list(class_counts(labels, classes).values()), dtype=float)
    return float(counts.std()) if len(counts) else 0.0
