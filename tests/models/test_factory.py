import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from trustml.exceptions import TrustmlInputError
from trustml.models import build_from_factory, load_factory

HERE = Path(__file__).parent


@pytest.fixture(autouse=True)
def factory_path(monkeypatch):
    monkeypatch.syspath_prepend(str(HERE))
    for name in ("_factory_module", "_factory_missing_dep"):
        monkeypatch.delitem(sys.modules, name, raising=False)


def test_load_factory_returns_the_callable():
    import _factory_module

    assert load_factory("_factory_module:make_net") is _factory_module.make_net
    assert load_factory("_factory_module:Nets.create") is _factory_module.Nets.create


def test_build_from_factory_passes_shape_dim_and_options():
    net = build_from_factory("_factory_module:make_net", input_shape=[2, 3], output_dim=4, width=5)
    assert isinstance(net, nn.Module)
    assert net[1].in_features == 6 and net[1].out_features == 5
    assert net(torch.zeros(7, 2, 3)).shape == (7, 4)


def test_build_from_factory_kwargs_factory_gets_tuple_shape():
    net = build_from_factory("_factory_module:make_anything", input_shape=[3], output_dim=2)
    assert net.in_features == 3


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        ("trustml_no_such_module_xyz:make", "no module named 'trustml_no_such_module_xyz'"),
        ("_factory_module:no_such_factory", "has no attribute 'no_such_factory'"),
        ("_factory_module:Nets.nope", "'_factory_module.Nets' has no attribute 'nope'"),
        ("_factory_module:NOT_CALLABLE", "expected a callable, got int"),
        ("_factory_missing_dep:make_net", "importing '_factory_missing_dep' failed"),
        ("no_colon_here", "expected 'package.module:callable'"),
        ("a:b:c", "expected 'package.module:callable'"),
        ("pkg.mod:", "Python identifiers"),
    ],
)
def test_load_factory_errors_name_the_problem(spec, fragment):
    with pytest.raises(TrustmlInputError) as info:
        load_factory(spec)
    assert fragment in str(info.value)


def test_missing_dependency_is_not_reported_as_missing_module():
    with pytest.raises(TrustmlInputError) as info:
        load_factory("_factory_missing_dep:make_net")
    assert "trustml_no_such_dependency_xyz" in str(info.value)
    assert "no module named '_factory_missing_dep'" not in str(info.value)


def test_factory_must_return_a_module():
    with pytest.raises(TrustmlInputError, match="returned str, expected a torch.nn.Module"):
        build_from_factory("_factory_module:not_a_module", input_shape=(3,), output_dim=1)


def test_unknown_factory_option_lists_parameters():
    with pytest.raises(TrustmlInputError) as info:
        build_from_factory("_factory_module:make_net", input_shape=(3,), output_dim=1, wdth=3)
    assert "wdth" in str(info.value)
    assert "input_shape, output_dim, width" in str(info.value)
