"""Hyper-parameter search that builds ensembles (AutoDEUQ-style).

Optuna proposes trials through its ask-and-tell interface (its journal kept in a folder, so a
killed search resumes); trustml trains them, several at once as lanes of the vectorized
ensemble engine and spread over MPI ranks, then builds the ensemble from the trained
candidates by greedy (Caruana) or top-K selection on a validation split. Everything derives
from one seed: the same seed gives the same trials and members on 1 or P ranks, resumed or
not.

Examples
--------
>>> from trustml.search import SearchSpace
>>> SearchSpace({"lr": {"log_uniform": [1e-4, 1e-2]}, "hidden": {"choice": [32, 64]}}).model_keys
('hidden',)
"""

from trustml.search.ensemble_search import DEFAULT_TRAINING, EnsembleSearch, search_ensemble
from trustml.search.select import (
    OBJECTIVES,
    STRATEGIES,
    Selection,
    candidate_scores,
    mixture_score,
    select_members,
)
from trustml.search.space import (
    DISTRIBUTIONS,
    TRAINING_KEYS,
    Distribution,
    SearchSpace,
    SearchSpaceError,
    check_model_options,
)

__all__ = [
    "DEFAULT_TRAINING",
    "DISTRIBUTIONS",
    "OBJECTIVES",
    "STRATEGIES",
    "TRAINING_KEYS",
    "Distribution",
    "EnsembleSearch",
    "SearchSpace",
    "SearchSpaceError",
    "Selection",
    "candidate_scores",
    "check_model_options",
    "mixture_score",
    "search_ensemble",
    "select_members",
]
