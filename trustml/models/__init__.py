"""Reference architectures (``cnn`` for 1D-4D grids, ``lstm``, ``mlp``) and user model factories.

Every builtin model is ``torch.func.vmap``-compatible, so ensembles can be trained vectorized.

Examples
--------
>>> import trustml.models as tmm
>>> net = tmm.build_model("mlp", input_shape=(8,), output_dim=1, hidden=(16,))
>>> tmm.model_summary(net)["n_parameters"]
161
"""

from trustml.models.builders import build_model, model_names
from trustml.models.factory import build_from_factory, load_factory
from trustml.models.summary import model_summary

__all__ = [
    "build_from_factory",
    "build_model",
    "load_factory",
    "model_names",
    "model_summary",
]
