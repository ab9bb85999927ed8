"""faiss's OpenMP thread count, narrowed to one for a block of work and restored after it."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator


@contextmanager
def one_omp_thread() -> Iterator[None]:
    """faiss on one OpenMP thread inside the block (the calling thread's setting only): for work too small
    to gain from hand-offs, and for builds whose result must not depend on thread timing."""
    import faiss

    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(before)
