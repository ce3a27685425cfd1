"""Factories for tests/models/test_factory.py, imported as "_factory_module:<name>"."""

from torch import nn


def make_net(input_shape, output_dim, width=8):
    n_in = 1
    for s in input_shape:
        n_in *= s
    return nn.Sequential(
        nn.Flatten(), nn.Linear(n_in, width), nn.ReLU(), nn.Linear(width, output_dim)
    )


def make_anything(**kwargs):
    return nn.Linear(kwargs["input_shape"][0], kwargs["output_dim"])


def not_a_module(input_shape, output_dim):
    return "a string"


class Nets:
    @staticmethod
    def create(input_shape, output_dim):
        return nn.Linear(input_shape[0], output_dim)


NOT_CALLABLE = 42
