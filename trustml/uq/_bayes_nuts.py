"""NUTS (``pyro.infer.MCMC``) for small Bayesian networks, one chain after the other.

The potential energy (minus the log joint of weights and data) is by default evaluated in
plain torch: the unconverted network runs the weights through ``functional_call``, the
Normal priors and the likelihood are summed in closed form. Pyro's own potential traces the
model at every leapfrog step, about ten times slower for small networks. The plain potential
and its gradient are checked against Pyro's (``initialize_model``) at every chain's starting
point; on any difference the chains use Pyro's potential, with a log line. Both define the
same posterior; every site is unconstrained, so there are no transforms.

Chains run sequentially, each from its own seed and its own re-initialised weights. Pyro can
run chains in worker processes, but on a CPU that means ``spawn`` (``fork`` after torch has
started its thread pools can deadlock), which re-imports torch and pickles the model in every
worker: seconds of start-up per chain, fragile for models defined in a script, while the
cores are better spent inside one chain's tensor ops. Sequential chains also make each
chain's draws depend on its own seed only, so under MPI the chains are spread over the ranks
(contiguous blocks) and gathered: every rank count gives the same draws.
"""

from __future__ import annotations

import logging
import math
import sys
from dataclasses import dataclass

import numpy as np
import torch
from pyro.infer import MCMC, NUTS
from pyro.infer.autoguide.initialization import init_to_value
from pyro.infer.mcmc.util import initialize_model
from torch import nn
from torch.func import functional_call

from trustml.distributed import Comm, block_range
from trustml.uq._pyro_convert import RegressionOrClassModel
from trustml.uq._rng import reinitialize, seed_int
from trustml.uq._source import Prepared
from trustml.utils.seeding import child

__all__ = ["ChainResult", "FusedPotential", "run_chains", "sample_posterior", "select_draws"]

log = logging.getLogger("trustml")
_LOG_SQRT_2PI = math.log(math.sqrt(2 * math.pi))


@dataclass
class ChainResult:
    """Draws of every chain: ``samples[site]`` of shape ``(chains, draws, *site_shape)``."""

    samples: dict[str, torch.Tensor]
    diverging: np.ndarray  # (chains, draws) bool
    acceptance_rate: list[float]
    engine: str


class FusedPotential:
    """Minus the log joint density of the weights and all data, in plain torch."""

    def __init__(
        self,
        model: RegressionOrClassModel,
        plain: nn.Module,
        prior_scale: float,
        data: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    ) -> None:
        self.model, self.plain, self.s0 = model, plain, float(prior_scale)
        self.fixed = {n: p.detach() for n, p in model.net.named_parameters()}
        self.fixed.update(dict(model.net.named_buffers()))
        self.x, self.y = data[0], data[1]

    def __call__(self, params: dict[str, torch.Tensor]) -> torch.Tensor:
        out = functional_call(self.plain, {**self.fixed, **params}, (self.x,))
        log_joint = self.model.log_likelihood(out, self.y)
        for w in params.values():
            log_joint = (
                log_joint + (-(w**2) / (2 * self.s0**2) - math.log(self.s0) - _LOG_SQRT_2PI).sum()
            )
        return -log_joint


def _agrees(fused: FusedPotential, reference, point: dict[str, torch.Tensor]) -> str | None:
    values = []
    for fn in (reference, fused):
        params = {n: v.detach().clone().requires_grad_(True) for n, v in point.items()}
        energy = fn(params)
        grads = torch.autograd.grad(energy, list(params.values()))
        values.append((energy.detach(), torch.cat([g.reshape(-1) for g in grads])))
    (e_ref, g_ref), (e_new, g_new) = values
    if not torch.isclose(e_new, e_ref, rtol=1e-4, atol=1e-3):
        return f"potential {float(e_new):.6g} != Pyro's {float(e_ref):.6g}"
    if torch.linalg.vector_norm(g_new - g_ref) > 1e-3 * torch.linalg.vector_norm(g_ref) + 1e-6:
        return "gradients differ from Pyro's"
    return None


def _potential(model, plain, prior_scale, data, init):
    """The fused potential when it reproduces Pyro's at ``init``, else Pyro's own."""
    x, y, idx = data
    _, reference, _, _ = initialize_model(
        model, model_args=(x, y, idx), model_kwargs={"size": len(idx)},
        init_strategy=init_to_value(values=init),
    )  # fmt: skip
    try:
        fused = FusedPotential(model, plain, prior_scale, data)
        why = _agrees(fused, reference, init)
    except Exception as exc:  # an op functional_call cannot run
        why = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    if why is None:
        return fused, "fused"
    log.info("BayesianNN: NUTS uses Pyro's potential (the plain one does not apply: %s)", why)
    return reference, "pyro"


def run_chains(
    model: RegressionOrClassModel,
    plain: nn.Module,
    prior_scale: float,
    data: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    inits: list[dict[str, torch.Tensor]],
    seeds: list[int],
    *,
    num_samples: int,
    warmup: int,
    max_tree_depth: int,
    progress: bool | None,
) -> ChainResult:
    """Run one NUTS chain per entry of ``inits``/``seeds`` on the full data ``(x, y, idx)``."""
    show = sys.stderr.isatty() if progress is None else bool(progress)
    per_chain: list[dict[str, torch.Tensor]] = []
    diverging = np.zeros((len(seeds), num_samples), dtype=bool)
    accept: list[float] = []
    engines = set()
    device = data[0].device
    for k, (init, seed) in enumerate(zip(inits, seeds, strict=True)):
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(seed)
            potential, engine = _potential(model, plain, prior_scale, data, init)
            engines.add(engine)
            kernel = NUTS(potential_fn=potential, max_tree_depth=max_tree_depth)
            mcmc = MCMC(
                kernel,
                num_samples=num_samples,
                warmup_steps=warmup,
                initial_params=init,
                disable_progbar=not show,
            )
            mcmc.run()
        per_chain.append({n: v.detach() for n, v in mcmc.get_samples().items()})
        diag = mcmc.diagnostics()
        diverging[k, list(diag["divergences"]["chain 0"])] = True
        accept.append(float(diag["acceptance rate"]["chain 0"]))
    names = per_chain[0] if per_chain else {}
    samples = {n: torch.stack([c[n] for c in per_chain]) for n in names}
    return ChainResult(samples, diverging, accept, "fused" if engines == {"fused"} else "pyro")


def _gather_chains(part: ChainResult, comm: Comm, device: torch.device) -> ChainResult:
    """The chains of every rank, in chain order (ranks own contiguous blocks, in rank order)."""
    plain = (
        {n: v.cpu().numpy() for n, v in part.samples.items()},
        part.diverging,
        part.acceptance_rate,
        part.engine,
    )
    parts = [p for p in comm.allgather(plain) if len(p[2])]  # ranks with chains
    samples = {
        n: torch.as_tensor(np.concatenate([p[0][n] for p in parts]), device=device)
        for n in parts[0][0]
    }
    return ChainResult(
        samples,
        np.concatenate([p[1] for p in parts]),
        [a for p in parts for a in p[2]],
        "fused" if all(p[3] == "fused" for p in parts) else "pyro",
    )


def sample_posterior(
    model: RegressionOrClassModel,
    plain: nn.Module,
    module: nn.Module,
    prior_scale: float,
    data: Prepared,
    ss: np.random.SeedSequence,
    device: torch.device,
    opts: dict,
    *,
    progress: bool | None,
    comm: Comm | None = None,
) -> ChainResult:
    """NUTS on all of ``data``: chain ``k`` is seeded by child ``"chain k"`` of ``ss`` and
    starts from ``module`` re-initialised from that child; point-estimated parameters (e.g.
    normalisation layers) stay at their initial values. With ``comm``, each rank runs a block
    of the chains and every rank returns all of them."""
    src = data.source
    if src.kind == "loader":
        raise ValueError("NUTS evaluates all the data at once: pass arrays or a dataset")
    everything = np.arange(src.n)
    x, y = src.labelled(*src.read(everything), device)
    model.net.eval()
    plain.eval()
    fixed = {n for n, _ in model.net.named_parameters()}
    seeds, inits = [], []
    for k in range(opts["chains"]):
        chain = child(ss, f"chain {k}")
        start = reinitialize(module, seed_int(child(chain, "init"))).to(device)
        inits.append({n: p.detach() for n, p in start.named_parameters() if n not in fixed})
        seeds.append(seed_int(chain))
    size, rank = (comm.size, comm.rank) if comm is not None else (1, 0)
    mine = block_range(opts["chains"], size, rank)
    part = run_chains(
        model, plain, prior_scale, (x, y, torch.as_tensor(everything, device=device)),
        [inits[k] for k in mine], [seeds[k] for k in mine], num_samples=opts["num_samples"],
        warmup=opts["warmup"], max_tree_depth=opts["max_tree_depth"], progress=progress,
    )  # fmt: skip
    return part if comm is None or size == 1 else _gather_chains(part, comm, device)


def select_draws(samples: dict[str, torch.Tensor], count: int | None) -> dict[str, torch.Tensor]:
    """``count`` draws ``(count, *shape)`` evenly spaced over all chains (chain-major), or all
    of them (``chains * draws``) when ``count`` is None."""
    flat = {n: v.reshape(-1, *v.shape[2:]) for n, v in samples.items()}
    if count is None:
        return flat
    total = next(iter(flat.values())).shape[0]
    if count > total:
        raise ValueError(f"Expected samples <= {total} (the NUTS draws kept), got {count}")
    pick = torch.as_tensor(np.linspace(0, total - 1, count).round().astype(np.int64))
    return {n: v[pick.to(v.device)] for n, v in flat.items()}
