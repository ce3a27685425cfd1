"""``uncertainty.search``: a hyper-parameter search that builds a deep ensemble.

Optuna proposes ``trials`` configurations from ``space``; each trains one network on the
training split; ``select`` builds the ensemble of ``members`` from them on the validation
split (``data.split.validation``, required). See :class:`trustml.search.EnsembleSearch`.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from trustml.protocol._fields import KeyedError, PositiveInt, StrictModel

__all__ = ["SearchSpec", "SelectSpec"]

#: Selection objectives per task (the validation score of the members' mixture).
OBJECTIVES = {"regression": ("nll", "crps"), "classification": ("nll", "brier")}


class SelectSpec(StrictModel):
    """``uncertainty.search.select``: how the members are chosen among the trials."""

    strategy: Literal["greedy", "top_k"] = "greedy"
    objective: Literal["nll", "crps", "brier"] = "nll"


class SearchSpec(StrictModel):
    """``uncertainty.search``: ``trials`` proposals from ``space``, ``select`` the members."""

    trials: PositiveInt = 24
    space: dict[str, Any] = Field(min_length=1)
    select: SelectSpec = Field(default_factory=SelectSpec)
    generation: PositiveInt = 8

    def check(self, where: str, task: str, members: int) -> None:
        """Cross-key rules; ``where`` is the method's key (``uncertainty`` or ``uncertainty[i]``).

        The space itself is validated by :class:`trustml.search.SearchSpace` (its error names
        the entry); the model options it varies are checked against the model at plan time.
        """
        from trustml.search import SearchSpace, SearchSpaceError

        try:
            SearchSpace(self.space)
        except SearchSpaceError as err:
            raise KeyedError(f"{where}.search.{err.key}", err.message) from None
        if self.select.objective not in OBJECTIVES[task]:
            raise KeyedError(
                f"{where}.search.select.objective",
                f"{self.select.objective!r} does not apply to task {task!r}; valid: "
                + ", ".join(OBJECTIVES[task]),
            )
        if self.trials < members:
            raise KeyedError(
                f"{where}.search.trials",
                f"{self.trials} trials cannot give {members} distinct candidates; give at least "
                f"members ({members}) trials",
            )
