"""Members trained apart (on several MPI ranks, or resumed from checkpoints) put back together.

``DeepEnsemble._fit_members`` returns one *part*: plain, picklable data for the members it
trained (``member_indices``, ``state_dicts``, ``history``, and the data facts every part
shares: ``target_shift``, ``target_scale``, ``n_outputs``, ``validation_indices``, ``engine``).
:func:`merge_parts` checks a set of parts covers every member exactly once and orders them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

__all__ = ["Merged", "merge_parts"]


@dataclass(frozen=True)
class Merged:
    """The parts of a whole ensemble, in member order.

    Attributes
    ----------
    state_dicts : list of dict of str to tensor
        Member ``k``'s weights at index ``k``.
    history : dict of str to list of list of float
        ``{"loss": [[per epoch] per member], ...}``.
    shared : mapping
        The first part: its data facts hold for every part.
    """

    state_dicts: list[Mapping[str, torch.Tensor]]
    history: dict[str, list[list[float]]]
    shared: Mapping[str, Any]


def merge_parts(parts: Sequence[Mapping[str, Any]], members: int) -> Merged:
    """Order the members of ``parts``, which must cover ``0..members-1`` exactly once.

    Raises
    ------
    ValueError
        A member is in two parts, or in none.
    """
    found: dict[int, tuple[Mapping[str, Any], int]] = {}
    for part in parts:
        for j, k in enumerate(part["member_indices"]):
            if k in found:
                raise ValueError(f"Member {k} was trained more than once")
            found[int(k)] = (part, j)
    missing = sorted(set(range(members)) - set(found))
    if missing or len(found) != members:
        raise ValueError(f"Expected members 0..{members - 1}; missing {missing}")
    first = parts[0]
    ordered = [found[k] for k in range(members)]
    history = {key: [list(p["history"][key][j]) for p, j in ordered] for key in first["history"]}
    return Merged([p["state_dicts"][j] for p, j in ordered], history, first)
