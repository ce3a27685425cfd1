"""Attribution of every member of an ensemble or posterior (or of a single module)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
from torch import nn

from trustml.explain._members import (
    Members,
    Reduced,
    StackedMembers,
    Target,
    as_input_tensor,
    member_index,
    per_example_baselines,
)
from trustml.explain._result import Attribution
from trustml.explain.methods import METHODS, MethodSpec, check_options
from trustml.utils.seeding import SeedLike, as_seed_sequence

__all__ = ["attribute"]

STRATEGIES = ("auto", "vmap", "loop")

Explainer = Callable[[nn.Module, torch.Tensor, Any], torch.Tensor]


def attribute(
    model: Any,
    inputs: np.ndarray | torch.Tensor,
    *,
    method: str | Explainer = "integrated_gradients",
    target: int | np.ndarray | torch.Tensor | Callable[[torch.Tensor], torch.Tensor] | None = 0,
    baselines: np.ndarray | torch.Tensor | float | None = None,
    output: str = "mean",
    strategy: str = "auto",
    internal_batch_size: int | None = None,
    seed: SeedLike = None,
    **method_kwargs: Any,
) -> Attribution:
    """Attribute one output of every member to the inputs.

    Parameters
    ----------
    model : nn.Module, list of nn.Module, or an uncertainty wrapper
        A plain module is one member (K = 1); a list of modules is K members. Modules passed
        directly are explained in eval mode (their train flags are restored afterwards). A
        fitted ``DeepEnsemble``, ``BayesianNN`` or ``MCDropout`` (anything with
        ``explain_modules()``) is explained member by member or posterior sample by posterior
        sample, with its modules used as returned; they map inputs to the predicted mean in data
        units (regression) or to logits (classification).
    inputs : array of shape (N, *input_shape)
        Any rank: ``(N, C, L)``, ``(N, C, H, W)``, ``(N, C, D, H, W)``, sequences ``(N, T, F)``.
    method : str or callable
        A name from :data:`METHODS`: ``"integrated_gradients"``, ``"saliency"``,
        ``"input_x_gradient"``, ``"smoothgrad"``, ``"gradient_shap"``, ``"deeplift"``,
        ``"occlusion"``, ``"feature_ablation"``, ``"gradcam"``. Or your own explainer
        ``f(module, inputs, target) -> attributions`` (run member by member).
    target : int, int array of shape (N,), callable or None
        Which output is explained: an output index (regression target, or class), one index per
        example (e.g. each example's predicted class), a callable mapping the output ``(N, D)``
        to ``(N,)`` row by row (e.g. ``lambda out: out.sum(1)``), or None for a scalar output.
    baselines : array broadcastable to (N, *input_shape), float or None
        Reference input (zeros by default) for ``integrated_gradients``, ``deeplift``,
        ``occlusion`` and ``feature_ablation``; for ``gradient_shap`` a distribution
        ``(M, *input_shape)`` to draw references from. Methods without a reference refuse it.
    output : {"mean", "std"}
        ``"std"`` explains the predicted standard deviation, for wrappers whose
        ``explain_modules(output="std")`` provides it; for a plain Gaussian-head module, pass a
        callable ``target`` instead (e.g. ``lambda out: F.softplus(out[:, 1])``).
    strategy : {"auto", "vmap", "loop"}
        ``"vmap"`` stacks the members (``torch.func.stack_module_state``) and runs one Captum
        pass over member-stacked inputs; ``"loop"`` runs Captum member by member. ``"auto"``
        stacks where the method and the members allow (same architecture, no recurrent
        ``nn.RNNBase`` layer, a probe reproduces every member) and loops otherwise.
    internal_batch_size : int, optional
        Input rows per forward/backward pass. By default chosen from the model's activation
        size: about 64 MiB per pass on a CPU (cache-friendly) and at most 1 GiB, 1-4 GiB on a GPU.
    seed : int, SeedSequence or None
        Seeds the noise of ``smoothgrad`` and ``gradient_shap`` (the global RNG is restored).
    **method_kwargs
        The method's options: ``integrated_gradients``: ``n_steps=50``,
        ``approximation="gausslegendre"``; ``saliency``: ``abs=True``; ``smoothgrad``:
        ``nt_samples=20``, ``stdevs`` (default 15 % of the input range),
        ``nt_type="smoothgrad"``, ``abs=True``; ``gradient_shap``: ``n_samples=5``,
        ``stdevs=0.0``; ``occlusion``: ``sliding_window_shapes`` (default: each axis in ~8
        windows, image/volume channels together, see :func:`occlusion_window`), ``strides``
        (default: the window); ``feature_ablation``: ``feature_mask="region"``
        (``"channel"``, ``"last_axis"`` or an int array, see :func:`feature_mask`);
        ``gradcam``: ``layer`` (default: the last convolution; a name for ensembles),
        ``relu_attributions=True`` (the map is upsampled to the input and broadcast over
        channels).

    Returns
    -------
    Attribution
        ``members`` ``(K, N, *input_shape)``, ``mean``, ``std``, ``sign_agreement``,
        ``rank_stability``, ``outputs`` and ``baseline_outputs`` ``(K, N)``,
        ``convergence_delta``.

    Examples
    --------
    >>> lin = nn.Linear(4, 1)
    >>> a = attribute(lin, np.ones((2, 4), dtype="float32"), target=0)
    >>> bool(np.allclose(a.members.sum(axis=-1), a.outputs - a.baseline_outputs, atol=1e-4))
    True
    """
    if strategy not in STRATEGIES:
        raise ValueError(
            f"The 'strategy' parameter must be one of {{'auto', 'vmap', 'loop'}}. "
            f"Got {strategy!r} instead."
        )
    if internal_batch_size is not None and (
        isinstance(internal_batch_size, bool)
        or not isinstance(internal_batch_size, int)
        or internal_batch_size < 1
    ):
        raise ValueError(f"Expected internal_batch_size >= 1, got {internal_batch_size!r}")
    members = Members(model, output)
    x = as_input_tensor(inputs, members.device)
    spec, name = _spec(method, method_kwargs)
    opts = check_options(spec, method_kwargs, x) if isinstance(method, str) else {}
    tgt = Target.parse(target, len(x), members.device)
    base = _baselines(baselines, x, spec)
    with members.evaluating(), torch.enable_grad(), _seeded(seed, members.device):
        # Fail on a target the outputs do not have before any attribution work.
        probe_target = Target(tgt.rows(0, 1), tgt.reduce)
        probe_target.pick(members.predict(x[:1], tgt, 1)[:1])
        rows = internal_batch_size or members.rows_per_pass(x[:1])
        per_example = spec.rows_per_example(opts)
        k = len(members)
        stacked = None
        if strategy != "loop" and spec.batchable and k > 1 and k * per_example <= rows:
            stacked = members.stack(x[:1])
        if strategy == "vmap" and stacked is None:
            raise ValueError(
                f"strategy='vmap' is not possible here: {_why_not(spec, k, per_example, rows)}"
            )
        if stacked is not None:
            maps, delta = _run_stacked(spec, stacked, members, x, tgt, base, rows, opts)
        else:
            maps, delta = _run_loop(spec, members, x, tgt, base, rows, opts)
        outputs = tgt.pick(members.predict(x, tgt, rows, stacked))
        if spec.baselines == "distribution":
            assert base is not None  # _baselines returns the references of these methods
            # E_b[F(b)] over the distribution the references are drawn from.
            dist = members.predict(base, tgt, rows, stacked).mean(dim=1, keepdim=True)
            base_out = tgt.pick(dist.expand(-1, len(x), -1))
        else:
            # "per_example": the references; otherwise (base None for "none") the zero input.
            ref = (
                base
                if spec.baselines == "per_example" and base is not None
                else torch.zeros_like(x)
            )
            base_out = tgt.pick(members.predict(ref, tgt, rows, stacked))
    return Attribution(
        members=maps,
        outputs=outputs.numpy(),
        baseline_outputs=base_out.numpy(),
        convergence_delta=delta,
        method=name,
        strategy="vmap" if stacked is not None else "loop",
    )


def _why_not(spec: MethodSpec, k: int, per_example: int, rows: int) -> str:
    if not spec.batchable:
        return f"method {spec.name!r} hooks the members' modules and runs them one by one"
    if k < 2:
        return "there is a single member"
    if k * per_example > rows:
        return f"one stacked pass needs {k * per_example} rows, internal_batch_size is {rows}"
    return (
        "the members cannot be stacked (different architectures, recurrent nn.RNNBase layers, "
        "or operations without a vmap rule)"
    )


def _run_stacked(
    spec: MethodSpec,
    stacked: StackedMembers,
    members: Members,
    x: torch.Tensor,
    tgt: Target,
    base: torch.Tensor | None,
    rows: int,
    opts: dict[str, Any],
) -> tuple[np.ndarray, np.ndarray | None]:
    """One Captum pass per chunk over member-major stacked inputs ``(K * n, ...)``."""
    k, n = len(members), len(x)
    forward: nn.Module = Reduced(stacked, tgt) if tgt.reduce is not None else stacked
    step = max(1, rows // (k * spec.rows_per_example(opts)))
    maps = np.empty((k, *x.shape), dtype=np.float32)
    deltas = np.empty((k, n)) if spec.has_delta else None
    for s in range(0, n, step):
        e = min(n, s + step)
        tile = x[s:e].repeat(k, *[1] * (x.dim() - 1)).requires_grad_()
        fargs = (member_index(k, e - s, x.device),)
        attr, delta = spec.run(
            forward,
            stacked,
            tile,
            tgt.rows(s, e, k),
            _chunk_baselines(spec, base, s, e, k),
            rows,
            fargs,
            **_chunk_options(opts, n, s, e, k),
        )
        maps[:, s:e] = attr.detach().reshape(k, e - s, *x.shape[1:]).float().cpu().numpy()
        if deltas is not None and delta is not None:
            deltas[:, s:e] = delta.detach().reshape(k, e - s).double().cpu().numpy()
    return maps, deltas


def _run_loop(
    spec: MethodSpec,
    members: Members,
    x: torch.Tensor,
    tgt: Target,
    base: torch.Tensor | None,
    rows: int,
    opts: dict[str, Any],
) -> tuple[np.ndarray, np.ndarray | None]:
    """Captum member by member, in chunks of examples that respect ``rows``."""
    k, n = len(members), len(x)
    step = max(1, rows // spec.rows_per_example(opts))
    maps = np.empty((k, *x.shape), dtype=np.float32)
    deltas = np.empty((k, n)) if spec.has_delta else None
    for j, module in enumerate(members.modules):
        forward = Reduced(module, tgt) if tgt.reduce is not None else module
        for s in range(0, n, step):
            e = min(n, s + step)
            attr, delta = spec.run(
                forward,
                module,
                x[s:e].clone().requires_grad_(),
                tgt.rows(s, e),
                _chunk_baselines(spec, base, s, e, 1),
                rows,
                None,
                **_chunk_options(opts, n, s, e, 1),
            )
            maps[j, s:e] = attr.detach().reshape(e - s, *x.shape[1:]).float().cpu().numpy()
            if deltas is not None and delta is not None:
                deltas[j, s:e] = delta.detach().reshape(e - s).double().cpu().numpy()
    return maps, deltas


def _chunk_baselines(
    spec: MethodSpec, base: torch.Tensor | None, s: int, e: int, k: int
) -> torch.Tensor | None:
    if base is None or spec.baselines != "per_example":
        return base
    chunk = base[s:e]
    return chunk.repeat(k, *[1] * (chunk.dim() - 1)) if k > 1 else chunk


def _chunk_options(opts: dict[str, Any], n: int, s: int, e: int, k: int) -> dict[str, Any]:
    """Per-example tensor options (a feature mask with one row per example) follow the chunk."""
    out = dict(opts)
    for key, v in opts.items():
        if isinstance(v, torch.Tensor) and v.dim() > 0 and len(v) == n and n > 1:
            out[key] = v[s:e].repeat(k, *[1] * (v.dim() - 1)) if k > 1 else v[s:e]
    return out


def _baselines(baselines: Any, x: torch.Tensor, spec: MethodSpec) -> torch.Tensor | None:
    if spec.baselines == "none":
        if baselines is not None:
            raise ValueError(f"attribution method {spec.name!r} takes no baselines")
        return None
    if spec.baselines == "distribution":
        if baselines is None or isinstance(baselines, int | float):
            return torch.full((1, *x.shape[1:]), float(baselines or 0.0), device=x.device)
        b = as_input_tensor(baselines, x.device)
        if tuple(b.shape[1:]) != tuple(x.shape[1:]):
            raise ValueError(
                f"gradient_shap baselines must have shape (M, {', '.join(map(str, x.shape[1:]))}),"
                f" got {tuple(b.shape)}"
            )
        return b
    return per_example_baselines(baselines, x)


@contextmanager
def _seeded(seed: SeedLike, device: torch.device) -> Iterator[None]:
    """Draw the methods' noise from ``seed``; torch's and numpy's global RNGs are restored."""
    if seed is None:
        yield
        return
    words = as_seed_sequence(seed).generate_state(2, dtype=np.uint32)
    devices = [device] if device.type == "cuda" else []
    # Captum's GradientShap draws from numpy's legacy global RNG, so that one is seeded too.
    np_state = np.random.get_state()  # noqa: NPY002
    try:
        with torch.random.fork_rng(devices=devices, device_type=device.type):
            torch.manual_seed(int(words[0]) << 31 | int(words[1]) >> 1)
            np.random.seed(int(words[1]))  # noqa: NPY002
            yield
    finally:
        np.random.set_state(np_state)  # noqa: NPY002


def _spec(method: Any, given: dict[str, Any]) -> tuple[MethodSpec, str]:
    if isinstance(method, str):
        return METHODS.get(method), method
    if callable(method):
        if given:
            raise TypeError(f"a custom explainer takes no options, got {', '.join(given)}")
        name = getattr(method, "__name__", type(method).__name__)
        return MethodSpec(name, _custom(method), batchable=False, baselines="none"), name
    raise TypeError(f"Expected method to be a name or a callable, got {type(method).__name__}")


def _custom(fn: Explainer) -> Callable[..., tuple[torch.Tensor, None]]:
    def run(forward, member, x, target, baselines, rows, fargs):
        attr = fn(forward, x, target)
        if not isinstance(attr, torch.Tensor):
            attr = torch.as_tensor(np.asarray(attr), dtype=torch.float32)
        if tuple(attr.shape) != tuple(x.shape):
            raise ValueError(
                f"the explainer returned shape {tuple(attr.shape)}, expected {tuple(x.shape)}"
            )
        return attr, None

    return run
