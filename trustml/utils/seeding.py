"""Seeds are arguments: everything derives from one ``numpy.random.SeedSequence``.

Ensemble member ``k`` draws from child ``k`` of the protocol's seed sequence, never from an MPI
rank, so the numbers do not depend on how members are spread over processes.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # torch is imported lazily: layer 0 stays light for the report layer
    import torch

__all__ = ["as_seed_sequence", "member_seed_sequences", "torch_generator", "child"]

SeedLike = int | np.random.SeedSequence | None


def as_seed_sequence(seed: SeedLike) -> np.random.SeedSequence:
    """Return ``seed`` as a :class:`numpy.random.SeedSequence` (``None`` -> fresh entropy)."""
    if isinstance(seed, np.random.SeedSequence):
        return seed
    if seed is None or (isinstance(seed, int | np.integer) and not isinstance(seed, bool)):
        if seed is not None and seed < 0:
            raise ValueError(f"Expected seed >= 0, got {seed}")
        return np.random.SeedSequence(seed)
    raise TypeError(
        f"Expected seed to be an int, a SeedSequence or None, got {type(seed).__name__}"
    )


def child(seed: SeedLike, name: str) -> np.random.SeedSequence:
    """A named, reproducible child stream, e.g. ``child(seed, "split")``.

    The name is hashed into the spawn key so adding a new stream never shifts existing ones.
    """
    ss = as_seed_sequence(seed)
    digest = hashlib.sha256(name.encode("utf-8")).digest()
    tag = int.from_bytes(digest[:8], "little")
    # Two words, so a named child never equals a member child (spawn keys of one word).
    return np.random.SeedSequence(ss.entropy, spawn_key=(*ss.spawn_key, tag, 0))


def member_seed_sequences(seed: SeedLike, members: int) -> list[np.random.SeedSequence]:
    """Children ``0..members-1`` of ``seed``; child ``k`` seeds ensemble member ``k``.

    Unlike ``SeedSequence.spawn`` this does not mutate ``seed``: calling it twice gives the
    same children.
    """
    ss = as_seed_sequence(seed)
    return [
        np.random.SeedSequence(ss.entropy, spawn_key=(*ss.spawn_key, k)) for k in range(members)
    ]


def torch_generator(seed: SeedLike, device: str | torch.device = "cpu") -> torch.Generator:
    """A :class:`torch.Generator` seeded from ``seed``."""
    import torch

    ss = as_seed_sequence(seed)
    g = torch.Generator(device=device)
    g.manual_seed(int(ss.generate_state(1, dtype=np.uint64)[0] >> np.uint64(1)))
    return g
