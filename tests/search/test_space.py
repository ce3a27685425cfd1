"""Search spaces: every malformed entry is an error naming its key path; model keys are
checked against the model before anything trains."""

from __future__ import annotations

import functools

import pytest
from torch import nn

import trustml.models as tmm
from trustml.exceptions import TrustmlInputError
from trustml.search import SearchSpace, SearchSpaceError, check_model_options

FULL = {
    "lr": {"log_uniform": [1e-4, 1e-2]},
    "weight_decay": {"log_uniform": [1e-6, 1e-3]},
    "batch_size": {"choice": [32, 64]},
    "epochs": {"int": [5, 20]},
    "hidden": {"choice": [32, 64]},
    "dropout": {"uniform": [0.0, 0.3]},
}


def test_a_full_space_parses_into_training_and_model_keys():
    space = SearchSpace(FULL)
    assert space.training_keys == ("lr", "weight_decay", "batch_size", "epochs")
    assert space.model_keys == ("hidden", "dropout")
    assert space["epochs"].kind == "int" and (space["epochs"].low, space["epochs"].high) == (5, 20)
    assert space["lr"].log and not space["dropout"].log
    assert SearchSpace(space.to_json()).to_json() == space.to_json()


@pytest.mark.parametrize(
    ("spec", "key", "words"),
    [
        ({}, "space", "non-empty"),
        ([1, 2], "space", "non-empty"),
        ({"lr": 0.01}, "space.lr", "mapping"),
        ({"lr": {}}, "space.lr", "mapping"),
        ({"lr": {"normal": [0, 1]}}, "space.lr", "unknown distribution 'normal'"),
        ({"lr": {"uniform": [0.1, 0.2], "choice": [1]}}, "space.lr", "exactly one"),
        ({"lr": {"uniform": [0.2, 0.1]}}, "space.lr.uniform", "low < high"),
        ({"dropout": {"uniform": [0.1, 0.1]}}, "space.dropout.uniform", "low < high"),
        ({"lr": {"log_uniform": [0.0, 0.1]}}, "space.lr.log_uniform", "low > 0"),
        ({"epochs": {"int": [0, 5], "log": True}}, "space.epochs.int", "low > 0"),
        ({"epochs": {"int": [1.5, 5]}}, "space.epochs.int", "two ints"),
        ({"lr": {"uniform": [0.1]}}, "space.lr.uniform", "[low, high]"),
        ({"hidden": {"choice": []}}, "space.hidden.choice", "non-empty list"),
        ({"hidden": {"choice": "abc"}}, "space.hidden.choice", "non-empty list"),
        ({"lr": {"uniform": [0.0, 0.1]}}, "space.lr.uniform", "numbers > 0"),
        ({"batch_size": {"uniform": [8, 64]}}, "space.batch_size", "int or choice"),
        ({"batch_size": {"choice": [0, 32]}}, "space.batch_size.choice", "ints >= 1"),
        ({"dropout": {"uniform": [0, 0.5], "log": True}}, "space.dropout.log", "'log'"),
    ],
)
def test_malformed_spaces_name_the_key(spec, key, words):
    with pytest.raises(SearchSpaceError) as info:
        SearchSpace(spec)
    assert info.value.key == key
    assert str(info.value).startswith(f"{key}: ") and words in str(info.value)
    assert isinstance(info.value, TrustmlInputError)  # the CLI's exit status 2


def _mlp():
    return functools.partial(tmm.build_model, "mlp", input_shape=(4,), output_dim=2)


def test_builtin_model_options_are_checked_by_the_builder():
    check_model_options(
        SearchSpace({"hidden": {"choice": [[8], [8, 8]]}, "dropout": {"uniform": [0, 0.3]}}), _mlp()
    )
    with pytest.raises(SearchSpaceError) as info:
        check_model_options(SearchSpace({"hiden": {"choice": [8]}}), _mlp())
    assert info.value.key == "space.hiden" and "has no option 'hiden'" in str(info.value)
    with pytest.raises(SearchSpaceError) as info:  # a value the model does not take
        check_model_options(SearchSpace({"dropout": {"uniform": [0.5, 1.5]}}), _mlp())
    assert info.value.key == "space.dropout" and "1.5" in str(info.value)


def test_factory_keywords_are_checked_by_signature_without_building():
    built = []

    def factory(*, width: int = 8, depth: int = 1) -> nn.Module:
        built.append(width)
        return nn.Linear(width, depth)

    check_model_options(
        SearchSpace({"width": {"int": [4, 16]}, "lr": {"log_uniform": [1e-3, 1e-2]}}), factory
    )
    with pytest.raises(SearchSpaceError) as info:
        check_model_options(SearchSpace({"widht": {"int": [4, 16]}}), factory)
    assert info.value.key == "space.widht" and "depth, width" in str(info.value)
    assert built == []
