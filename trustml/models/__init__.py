"""Reference architectures (``cnn`` for 1D-4D grids, ``lstm``, ``mlp``), user model factories
and the public protocol the grouped ensemble engine runs models through.

Every builtin model is ``torch.func.vmap``-compatible, so ensembles can be trained vectorized;
``cnn`` and ``mlp`` also implement :class:`GroupedModule` (see :mod:`trustml.models.grouped`),
the fast path a user's own model class can take too.

Examples
--------
>>> import trustml.models as tmm
>>> net = tmm.build_model("mlp", input_shape=(8,), output_dim=1, hidden=(16,))
>>> tmm.model_summary(net)["n_parameters"]
161
>>> isinstance(net, tmm.GroupedModule)
True
"""

from trustml.models.builders import build_model, model_names
from trustml.models.dropout import CHANNELWISE_DROPOUT_TYPES, DROPOUT_TYPES, dropout_rates
from trustml.models.factory import build_from_factory, load_factory
from trustml.models.grouped import GroupedCall, GroupedModule, Lanes, has_grouped_forward
from trustml.models.summary import model_summary

__all__ = [
    "CHANNELWISE_DROPOUT_TYPES",
    "DROPOUT_TYPES",
    "GroupedCall",
    "GroupedModule",
    "Lanes",
    "build_from_factory",
    "build_model",
    "dropout_rates",
    "has_grouped_forward",
    "load_factory",
    "model_names",
    "model_summary",
]
