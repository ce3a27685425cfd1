"""A factory module whose own import fails: it needs a package that is not installed."""

import trustml_no_such_dependency_xyz  # noqa: F401


def make_net(input_shape, output_dim):
    raise AssertionError("never reached")
