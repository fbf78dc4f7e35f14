"""Search the VAE's latent space: CMA-ES on decoded-and-scored candidates, and gradient ascent
through the property head.

Both keep z inside a trust region, a ball around the origin holding 99 % of the prior's mass,
so decoded crystals stay where the decoder was trained.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from scipy.stats import chi

from invdesign.featurize.elements import atomic_masses
from invdesign.models.vae import CrystalVAE, DecoderOutput

AMU_PER_A3_TO_G_PER_CM3 = 1.66053906660


def trust_radius(latent: int, quantile: float = 0.99) -> float:
    """Radius of the ball around 0 holding `quantile` of N(0, I)'s mass in `latent` dims."""
    return float(chi.ppf(quantile, latent))


def project(z: np.ndarray, radius: float) -> np.ndarray:
    """Pull rows of z (n, d) back onto the ball of `radius` around the origin."""
    norm = np.linalg.norm(z, axis=1, keepdims=True)
    return z * np.minimum(1.0, radius / np.maximum(norm, 1e-12))


def cma_es(evaluate: Callable[[np.ndarray], np.ndarray], x0: np.ndarray, *, radius: float,
           sigma0: float = 0.5, budget: int = 1000, popsize: int = 32, seed: int = 0) -> None:
    """Maximise `evaluate` (rows of z -> scores, -inf for failures) with CMA-ES from x0.

    The caller's `evaluate` keeps whatever it needs (decoded candidates and their scores);
    this only steers the search.
    """
    import cma

    es = cma.CMAEvolutionStrategy(x0, sigma0, {"popsize": popsize, "seed": seed + 1,
                                               "verbose": -9, "maxfevals": budget})
    used = 0
    while not es.stop() and used < budget:
        candidates = np.asarray(es.ask())
        scores = evaluate(project(candidates, radius))
        used += len(candidates)
        finite = np.isfinite(scores)
        worst = scores[finite].min() if finite.any() else 0.0
        penalty = worst - 1.0 - np.abs(worst)
        fitness = -np.where(finite, scores, penalty)  # CMA-ES minimises
        es.tell(list(candidates), fitness.tolist())


def soft_geometry(model: CrystalVAE, out: DecoderOutput) -> tuple[torch.Tensor, torch.Tensor]:
    """Differentiable density (g/cm^3) and volume per atom (A^3) of decoder outputs, from the
    expected element counts and the decoded lattice."""
    probs = torch.softmax(out.count_logits, -1)
    k = torch.arange(probs.shape[-1], dtype=probs.dtype)
    counts = (probs * k).sum(-1)  # (B, V)
    masses = torch.as_tensor(atomic_masses(), dtype=probs.dtype)[model.vocab]
    n = counts.sum(1).clamp(min=1.0)
    mass = (counts * masses).sum(1)
    p = model.lattice_parameters(out.lattice)
    a, b, c = p[:, 0], p[:, 1], p[:, 2]
    cos = torch.cos(torch.deg2rad(p[:, 3:]))
    det = 1 - (cos**2).sum(1) + 2 * cos.prod(1)
    volume = a * b * c * det.clamp(min=1e-6).sqrt()
    return mass / volume * AMU_PER_A3_TO_G_PER_CM3, volume / n


def gradient_ascent(model: CrystalVAE, value: Callable[[dict[str, np.ndarray]], np.ndarray],
                    inputs: Callable[[torch.Tensor], dict[str, torch.Tensor]], z0: np.ndarray, *,
                    radius: float, steps: int = 60, lr: float = 0.05,
                    snapshot_every: int = 10) -> list[np.ndarray]:
    """Move each row of z0 uphill on `value`, a numpy function of named properties.

    `inputs(z)` gives the properties as differentiable tensors (e.g. K and G from the property
    head, density from the decoder); d value / d property comes from central differences of
    `value` (cheap: a handful of properties), and autograd carries it back to z.

    Returns:
        Snapshots of z (each (n, d)) every `snapshot_every` steps, the last one included.
    """
    z = torch.tensor(project(np.asarray(z0, dtype=np.float32), radius), requires_grad=True)
    optimizer = torch.optim.Adam([z], lr=lr)
    snapshots = []
    for step in range(steps):
        props = inputs(z)
        current = {name: t.detach().double().numpy() for name, t in props.items()}
        surrogate_loss = z.new_zeros(())
        for name, tensor in props.items():
            grad = _central_difference(value, current, name)
            surrogate_loss = surrogate_loss - (torch.from_numpy(grad).float() * tensor).sum()
        optimizer.zero_grad()
        surrogate_loss.backward()
        optimizer.step()
        with torch.no_grad():
            z.copy_(torch.from_numpy(project(z.numpy(), radius)))
        if (step + 1) % snapshot_every == 0 or step == steps - 1:
            snapshots.append(z.detach().numpy().copy())
    return snapshots


def _central_difference(value: Callable[[dict[str, np.ndarray]], np.ndarray],
                        at: dict[str, np.ndarray], name: str) -> np.ndarray:
    """d value / d at[name], per row, by a relative central difference (0 where not finite)."""
    h = 1e-4 * np.maximum(np.abs(at[name]), 1e-3)
    up, down = dict(at), dict(at)
    up[name], down[name] = at[name] + h, at[name] - h
    with np.errstate(all="ignore"):
        grad = (value(up) - value(down)) / (2 * h)
    return np.where(np.isfinite(grad), grad, 0.0)
