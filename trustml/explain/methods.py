"""The attribution methods by name: small adapters over Captum, one registry.

Every adapter has the signature ``run(forward, member, x, target, baselines, rows, fargs,
**options) -> (attributions, delta or None)``: ``forward`` is what Captum differentiates (one
member, or all members stacked, with ``fargs`` carrying each row's member index), ``member``
the raw module (for layer methods), ``rows`` the number of input rows one forward pass may
hold. Options are the method's keywords; unknown ones are refused by :func:`check_options`.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from captum.attr import (
    DeepLift,
    FeatureAblation,
    GradientShap,
    InputXGradient,
    IntegratedGradients,
    LayerGradCam,
    NoiseTunnel,
    Occlusion,
    Saliency,
)
from torch import nn
from torch.nn import functional as F

from trustml.registry import Registry

__all__ = ["METHODS", "MethodSpec", "feature_mask", "occlusion_window"]

Run = Callable[..., tuple[torch.Tensor, torch.Tensor | None]]


@dataclass(frozen=True)
class MethodSpec:
    """How one attribution method is run.

    Attributes
    ----------
    name : str
    run : callable
        The adapter (see the module docstring).
    options : dict
        Keyword options and their defaults (``None``: chosen from the inputs).
    batchable : bool
        Whether members can be stacked into one vectorized pass (methods that hook modules
        or layers, DeepLift and GradCAM, run member by member).
    baselines : {"per_example", "distribution", "none"}
    has_delta : bool
        Whether Captum reports a completeness gap.
    rows_per_example : callable
        Rows one example needs in a single forward pass, from the resolved options.
    """

    name: str
    run: Run
    options: dict[str, Any] = field(default_factory=dict)
    batchable: bool = True
    baselines: str = "per_example"
    has_delta: bool = False
    rows_per_example: Callable[[dict[str, Any]], int] = lambda _opts: 1


METHODS: Registry[MethodSpec] = Registry("attribution method")


def _register(spec: MethodSpec) -> MethodSpec:
    return METHODS.register(spec.name)(spec)


def check_options(spec: MethodSpec, given: dict[str, Any], x: torch.Tensor) -> dict[str, Any]:
    """``given`` merged over the defaults; unknown keywords raise ``TypeError``."""
    unknown = sorted(set(given) - set(spec.options))
    if unknown:
        valid = ", ".join(sorted(spec.options)) or "none"
        raise TypeError(
            f"attribution method {spec.name!r} got unexpected option(s) {', '.join(unknown)}; "
            f"valid: {valid}"
        )
    opts = {**spec.options, **given}
    if spec.name == "smoothgrad" and opts["stdevs"] is None:
        # 15 % of the input range: the noise level the SmoothGrad paper found to work.
        opts["stdevs"] = 0.15 * float(x.max() - x.min()) or 0.15
    if spec.name == "occlusion" and opts["sliding_window_shapes"] is None:
        opts["sliding_window_shapes"] = occlusion_window(tuple(x.shape[1:]))
    if spec.name == "occlusion" and opts["strides"] is None:
        opts["strides"] = opts["sliding_window_shapes"]
    if spec.name == "feature_ablation":
        opts["feature_mask"] = feature_mask(opts["feature_mask"], tuple(x.shape[1:]), len(x))
        opts["feature_mask"] = opts["feature_mask"].to(x.device)
    return opts


def occlusion_window(sample_shape: tuple[int, ...]) -> tuple[int, ...]:
    """Default occlusion window: each axis cut into about 8 windows; the channels of an image
    or volume ``(C, *spatial)`` are occluded together.

    >>> occlusion_window((1, 32, 32)), occlusion_window((50, 4)), occlusion_window((2, 8, 16, 16))
    ((1, 4, 4), (7, 1), (2, 1, 2, 2))
    """
    windows = tuple(max(1, math.ceil(s / 8)) for s in sample_shape)
    if len(sample_shape) >= 3:
        windows = (sample_shape[0], *windows[1:])
    return windows


def feature_mask(
    spec: Any, sample_shape: tuple[int, ...], n: int, regions: int = 4
) -> torch.Tensor:
    """Feature groups for ``feature_ablation``, as ids ``(1 or N, *sample_shape)``.

    Parameters
    ----------
    spec : {"region", "channel", "last_axis"} or int array
        ``"region"``: a grid of up to ``regions`` blocks per axis (the channels of an image or
        volume ``(C, *spatial)`` stay together); ``"channel"``: one group per index of the
        sample's first axis; ``"last_axis"``: one group per index of the last axis (the
        features of a ``(N, T, F)`` sequence); an array broadcastable to ``(N, *sample_shape)``
        gives the groups explicitly.
    """
    shape = tuple(sample_shape)
    if isinstance(spec, str):
        if spec == "channel":
            ids = np.broadcast_to(np.arange(shape[0]).reshape(-1, *[1] * (len(shape) - 1)), shape)
        elif spec == "last_axis":
            ids = np.broadcast_to(np.arange(shape[-1]), shape)
        elif spec == "region":
            split = [False, *[True] * (len(shape) - 1)] if len(shape) >= 3 else [True] * len(shape)
            blocks = [min(regions, s) if cut else 1 for s, cut in zip(shape, split, strict=True)]
            axes = [
                (np.arange(s) * b // s).reshape([-1 if i == a else 1 for i in range(len(shape))])
                for a, (s, b) in enumerate(zip(shape, blocks, strict=True))
            ]
            ids = np.zeros(shape, dtype=np.int64)
            for a, ax in enumerate(axes):
                ids = ids * blocks[a] + ax
        else:
            raise ValueError(
                "The 'feature_mask' option must be one of {'region', 'channel', 'last_axis'} "
                f"or an int array. Got {spec!r} instead."
            )
        return torch.as_tensor(np.ascontiguousarray(ids), dtype=torch.long)[None]
    mask = torch.as_tensor(np.asarray(spec)).long()
    try:
        mask = mask.expand(n, *shape) if mask.dim() == len(shape) + 1 else mask.expand(*shape)[None]
    except RuntimeError:
        raise ValueError(
            f"feature_mask of shape {tuple(mask.shape)} does not broadcast to the inputs "
            f"{(n, *shape)}"
        ) from None
    # Captum wants ids 0..G-1; relabel whatever integers were given.
    _, ids = torch.unique(mask, return_inverse=True)
    return ids.reshape(mask.shape)


# -- adapters ---------------------------------------------------------------------------------


def _ig(forward, member, x, target, baselines, rows, fargs, *, n_steps, approximation):
    return IntegratedGradients(forward).attribute(
        x,
        baselines=baselines,
        target=target,
        additional_forward_args=fargs,
        n_steps=n_steps,
        method=approximation,
        internal_batch_size=max(rows, len(x)),
        return_convergence_delta=True,
    )


def _saliency(forward, member, x, target, baselines, rows, fargs, *, abs):
    return Saliency(forward).attribute(
        x, target=target, additional_forward_args=fargs, abs=abs
    ), None


def _input_x_gradient(forward, member, x, target, baselines, rows, fargs):
    return InputXGradient(forward).attribute(x, target=target, additional_forward_args=fargs), None


def _smoothgrad(
    forward, member, x, target, baselines, rows, fargs, *, nt_samples, stdevs, nt_type, abs
):
    attr = NoiseTunnel(Saliency(forward)).attribute(
        x,
        nt_type=nt_type,
        nt_samples=nt_samples,
        nt_samples_batch_size=max(1, rows // len(x)),
        stdevs=stdevs,
        target=target,
        additional_forward_args=fargs,
        abs=abs,
    )
    return attr, None


def _gradient_shap(forward, member, x, target, baselines, rows, fargs, *, n_samples, stdevs):
    attr = GradientShap(forward).attribute(
        x,
        baselines=baselines,
        n_samples=n_samples,
        stdevs=stdevs,
        target=target,
        additional_forward_args=fargs,
    )
    return attr, None


def _deeplift(forward, member, x, target, baselines, rows, fargs):
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Setting forward, backward hooks")
        return DeepLift(forward).attribute(
            x, baselines=baselines, target=target, return_convergence_delta=True
        )


def _occlusion(
    forward, member, x, target, baselines, rows, fargs, *, sliding_window_shapes, strides
):
    attr = Occlusion(forward).attribute(
        x,
        sliding_window_shapes=tuple(sliding_window_shapes),
        strides=tuple(strides),
        baselines=baselines,
        target=target,
        additional_forward_args=fargs,
        perturbations_per_eval=max(1, rows // len(x)),
    )
    return attr, None


def _feature_ablation(forward, member, x, target, baselines, rows, fargs, *, feature_mask):
    attr = FeatureAblation(forward).attribute(
        x,
        baselines=baselines,
        target=target,
        additional_forward_args=fargs,
        feature_mask=feature_mask,
        perturbations_per_eval=max(1, rows // len(x)),
    )
    return attr, None


def _gradcam(forward, member, x, target, baselines, rows, fargs, *, layer, relu_attributions):
    conv = _resolve_layer(member, layer)
    attr = LayerGradCam(forward, conv).attribute(
        x, target=target, relu_attributions=relu_attributions
    )
    return _upsample(attr, tuple(x.shape[1:])), None


def _upsample(layer_map: torch.Tensor, sample_shape: tuple[int, ...]) -> torch.Tensor:
    """A layer map ``(B, 1, *layer_spatial)`` interpolated to the input's trailing axes and
    broadcast over the rest (channels, folded time), ``(B, *sample_shape)``."""
    m = layer_map.dim() - 2
    if m < 1 or m > 3 or len(sample_shape) < m + 1:
        raise ValueError(
            f"gradcam: the layer's output {tuple(layer_map.shape)} has no spatial axes that "
            f"match the input sample shape {sample_shape}"
        )
    mode = {1: "linear", 2: "bilinear", 3: "trilinear"}[m]
    up = F.interpolate(layer_map, size=sample_shape[-m:], mode=mode, align_corners=False)
    lead = len(sample_shape) - m
    return up.reshape(len(up), *[1] * lead, *sample_shape[-m:]).expand(len(up), *sample_shape)


def _resolve_layer(member: nn.Module, layer: Any) -> nn.Module:
    if isinstance(layer, nn.Module):
        return layer
    if isinstance(layer, str):
        try:
            return member.get_submodule(layer)
        except AttributeError:
            raise ValueError(f"gradcam: the model has no layer named {layer!r}") from None
    convs = [m for m in member.modules() if isinstance(m, nn.modules.conv._ConvNd)]
    if not convs:
        raise ValueError(
            "gradcam needs a convolutional layer and the model has none; pass layer='name' "
            "of the layer to explain"
        )
    return convs[-1]


for _spec in (
    MethodSpec(
        "integrated_gradients",
        _ig,
        {"n_steps": 50, "approximation": "gausslegendre"},
        has_delta=True,
    ),
    MethodSpec("saliency", _saliency, {"abs": True}, baselines="none"),
    MethodSpec("input_x_gradient", _input_x_gradient, baselines="none"),
    MethodSpec(
        "smoothgrad",
        _smoothgrad,
        {"nt_samples": 20, "stdevs": None, "nt_type": "smoothgrad", "abs": True},
        baselines="none",
    ),
    MethodSpec(
        "gradient_shap",
        _gradient_shap,
        {"n_samples": 5, "stdevs": 0.0},
        baselines="distribution",
        rows_per_example=lambda opts: int(opts["n_samples"]),
    ),
    MethodSpec(
        "deeplift", _deeplift, batchable=False, has_delta=True, rows_per_example=lambda _: 2
    ),
    MethodSpec(
        "occlusion",
        _occlusion,
        {"sliding_window_shapes": None, "strides": None},
        rows_per_example=lambda _: 1,
    ),
    MethodSpec("feature_ablation", _feature_ablation, {"feature_mask": "region"}),
    MethodSpec(
        "gradcam",
        _gradcam,
        {"layer": None, "relu_attributions": True},
        batchable=False,
        baselines="none",
    ),
):
    _register(_spec)
