"""Coordinate denoiser: a short score-based refinement of decoded crystals (as in CDVAE/DiffCSP).

Trained on a generator's training crystals: Cartesian Gaussian noise of scale sigma (log-uniform
in [sigma_min, sigma_max], in A) moves the atoms, and an E(3)-equivariant message-passing network
over periodic k-nearest-neighbour graphs predicts that noise (its translation-free part) from the
noisy crystal. Refinement treats decoded positions as noisy at `sigma_start` (optionally adding
fresh noise of that scale) and walks sigma down a geometric ladder with deterministic steps
x <- x - (sigma_i - sigma_{i+1}) * eps_hat, ending at the network's denoised estimate (or
ancestral steps with fresh noise). Species are kept. With `lattice_noise`, the cell is noised
too: a random symmetric strain E (std tau = lattice_noise * sigma / sigma_max) deforms cell and
positions together, L -> L (I + E), and an equivariant head predicts E itself from the same
graph (a weighted mean of bond-direction outer products plus an isotropic term; the strain, not
E / tau, so that bond-length deviations map to it the same way at every noise level). Each
refinement step undoes the share (tau_i - tau_{i+1}) / tau_i of the predicted strain, so the
decoded cell walks back towards the training crystals' cells; otherwise the lattice is kept
and only coordinates move. A few dozen batched steps, no Langevin chains. A denoiser trained
with noise up to about half the cell can also start from uniform random positions
(DiffCSP-style generation of the coordinates).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from invdesign.featurize.graph import ANGLE_SHELL
from invdesign.models.cgcnn import GaussianExpansion

StartPoint = Literal["decoded", "random"]
START_POINTS: tuple[StartPoint, ...] = ("decoded", "random")
Solver = Literal["euler", "multistep"]
SOLVERS: tuple[Solver, ...] = ("euler", "multistep")


@dataclass(frozen=True, kw_only=True)
class DenoiserConfig:
    """Architecture of a coordinate denoiser and its default refinement schedule."""

    hidden: int = 64
    n_layers: int = 4
    n_gaussians: int = 32
    cutoff: float = 6.0  # range of the Gaussian distance expansion, A
    k: int = 16  # neighbours per atom
    images: int = 2  # periodic images searched: -images..images along each lattice vector
    n_angular: int = 0  # bond-angle bins per edge (0: distances only)
    lattice_noise: float = 0.0  # strain std at sigma_max (0: the cell is kept, never refined)
    sigma_min: float = 0.01  # A
    sigma_max: float = 1.0  # A
    refine_sigma: float = 0.3  # refinement starts at this noise level
    refine_steps: int = 20
    refine_noise: bool = False  # add fresh noise of scale refine_sigma before refining
    refine_start: StartPoint = "decoded"  # "random": positions drawn uniformly in the cell instead
    refine_stochastic: bool = False  # ancestral steps (fresh noise each step) instead of ODE
    refine_cell: bool = True  # refine the cell too (only where lattice_noise > 0)
    refine_passes: int = 1  # walk the whole ladder this many times, each from the last result
    refine_solver: Solver = "euler"  # deterministic steps: first order, or second-order multistep

    def __post_init__(self) -> None:
        if self.n_angular == 1 or self.n_angular < 0:
            raise ValueError(f"n_angular must be 0 (off) or at least 2 bins, got {self.n_angular}")
        if not 0.0 <= self.lattice_noise < 0.5:
            raise ValueError(f"lattice_noise must be in [0, 0.5), got {self.lattice_noise}")
        if self.refine_start not in START_POINTS:
            raise ValueError(f"refine_start must be one of {START_POINTS}, "
                             f"got {self.refine_start!r}")
        if self.refine_passes < 1:
            raise ValueError(f"refine_passes must be at least 1, got {self.refine_passes}")
        if self.refine_solver not in SOLVERS:
            raise ValueError(f"refine_solver must be one of {SOLVERS}, "
                             f"got {self.refine_solver!r}")

    @property
    def refines_cell(self) -> bool:
        """Whether refinement moves the cell by default (asked for, and a cell head learnt)."""
        return self.refine_cell and self.lattice_noise > 0

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class PaddedCrystals:
    """A batch of B crystals of up to M atoms: Cartesian positions, lattice rows, species."""

    lattice: torch.Tensor  # (B, 3, 3), rows are lattice vectors, A
    cart: torch.Tensor  # (B, M, 3), A
    numbers: torch.Tensor  # (B, M) atomic numbers, 0 in padding
    mask: torch.Tensor = field(init=False)  # (B, M) real atoms

    def __post_init__(self) -> None:
        self.mask = self.numbers > 0

    @classmethod
    def from_arrays(cls, lattice: np.ndarray, cart: np.ndarray, numbers: np.ndarray
                    ) -> PaddedCrystals:
        return cls(torch.as_tensor(lattice, dtype=torch.float32),
                   torch.as_tensor(cart, dtype=torch.float32), torch.as_tensor(numbers))

    def _fractional(self, cart: torch.Tensor) -> torch.Tensor:
        """Cartesian positions (B, M, 3) -> fractional coordinates wrapped into [0, 1)."""
        frac = torch.linalg.solve(self.lattice.transpose(1, 2), cart.transpose(1, 2))
        return torch.remainder(frac.transpose(1, 2), 1.0)

    def wrapped(self, cart: torch.Tensor) -> torch.Tensor:
        """Positions mapped back into the cell (fractional coordinates in [0, 1))."""
        return self._fractional(cart) @ self.lattice

    def with_positions(self, cart: torch.Tensor) -> PaddedCrystals:
        return PaddedCrystals(self.lattice, cart, self.numbers)

    def strained(self, deformation: torch.Tensor) -> PaddedCrystals:
        """Cell and positions deformed together by (B, 3, 3) matrices acting on row vectors
        (fractional coordinates unchanged)."""
        return PaddedCrystals(self.lattice @ deformation, self.cart @ deformation, self.numbers)

    def frac_coords(self) -> np.ndarray:
        """(B, M, 3) fractional coordinates in [0, 1), float64."""
        return self._fractional(self.cart).double().numpy()


def periodic_knn(crystals: PaddedCrystals, k: int, images: int
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """The k nearest neighbours of every atom, periodic images included.

    Positions should lie in the cell (`PaddedCrystals.wrapped`): images cover -images..images
    cells along each lattice vector.

    Returns:
        (neighbour index (B, M, k) into the M atoms of the same crystal,
         vectors from each atom to its neighbours (B, M, k, 3) in A).
    """
    r = torch.arange(-images, images + 1, dtype=torch.float32)
    offsets = torch.cartesian_prod(r, r, r)  # (K, 3)
    shifts = offsets @ crystals.lattice  # (B, K, 3)
    delta = crystals.cart[:, None, :, :] - crystals.cart[:, :, None, :]  # (B, i, j, 3)
    # |delta + shift|^2 without materialising (B, M, M, K, 3); in place, the largest tensor here
    d2 = torch.einsum("bijx,bkx->bijk", delta, shifts).mul_(2)
    d2 += (delta ** 2).sum(-1)[..., None]
    d2 += (shifts ** 2).sum(-1)[:, None, None, :]
    b, m = crystals.numbers.shape
    n_images = len(offsets)
    d2.masked_fill_(~crystals.mask[:, None, :, None], float("inf"))
    home = n_images // 2  # an atom is not its own neighbour in the home cell
    d2[..., home] = d2[..., home].masked_fill(torch.eye(m, dtype=torch.bool), float("inf"))
    d2 = d2.reshape(b, m, m * n_images)
    flat = d2.topk(min(k, m * n_images), dim=-1, largest=False).indices  # (B, M, k)
    j, image = flat // n_images, flat % n_images
    vectors = (torch.gather(delta, 2, j[..., None].expand(-1, -1, -1, 3))
               + torch.gather(shifts[:, None].expand(-1, m, -1, -1), 2,
                              image[..., None].expand(-1, -1, -1, 3)))
    return j, vectors


def bond_angles(vectors: torch.Tensor, dist: torch.Tensor, n_bins: int) -> torch.Tensor:
    """Bond-angle descriptor of each edge (B, M, k, n_bins): the distribution of cos(j-i-l)
    over the centre's other edges l on Gaussians across [-1, 1], edge l weighted by
    exp(-(r_il - r_nearest) / ANGLE_SHELL) so the first coordination shell dominates (the
    dense counterpart of `invdesign.featurize.graph.angle_descriptor`)."""
    unit = vectors / dist[..., None]
    cos = torch.einsum("bmkx,bmlx->bmkl", unit, unit).clamp(-1.0, 1.0)
    weight = torch.exp(-(dist - dist.min(-1, keepdim=True).values) / ANGLE_SHELL)  # (B, M, k)
    k = dist.shape[-1]
    weight = weight[..., None, :] * (1 - torch.eye(k))  # (B, M, k, l), no edge with itself
    centres = torch.linspace(-1.0, 1.0, n_bins)
    basis = (cos[..., None] - centres).div_(2.0 / (n_bins - 1)).square_().neg_().exp_()
    out = basis.mul_(weight[..., None]).sum(-2)
    return out / weight.sum(-1, keepdim=True).clamp(min=1e-12)


def gather_neighbours(x: torch.Tensor, j: torch.Tensor) -> torch.Tensor:
    """Per-atom features x (B, M, F) at the neighbour indices j (B, M, k): (B, M, k, F)."""
    b, m, k = j.shape
    flat = (j + torch.arange(b)[:, None, None] * m).reshape(-1)
    return x.reshape(b * m, -1).index_select(0, flat).reshape(b, m, k, -1)


class EdgeBlock(nn.Module):
    """Gated convolution: h_i += MLP(mean_j sigmoid(f_ij) * silu(s_ij)), with
    [f_ij, s_ij] = W_c h_i + W_n h_j + W_e e_ij. Node terms are computed once per atom, so the
    only per-edge matrix product is the one on the distance expansion."""

    def __init__(self, hidden: int, edge_dim: int):
        super().__init__()
        self.center = nn.Linear(hidden, 2 * hidden)
        self.neighbour = nn.Linear(hidden, 2 * hidden, bias=False)
        self.edge = nn.Linear(edge_dim, 2 * hidden, bias=False)
        self.update = nn.Sequential(nn.Linear(2 * hidden, hidden), nn.SiLU(),
                                    nn.Linear(hidden, hidden))
        self.norm = nn.LayerNorm(hidden)

    def forward(self, h: torch.Tensor, j: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        # h (B, M, H); j (B, M, k); e (B, M, k, G); sums in place: per-edge tensors are large
        z = gather_neighbours(self.neighbour(h), j)
        z += self.center(h)[:, :, None]
        z += self.edge(e)
        gate, signal = z.chunk(2, dim=-1)
        msg = (torch.sigmoid(gate) * nn.functional.silu(signal)).mean(2)
        return self.norm(h + self.update(torch.cat([h, msg], -1)))


def symmetric_noise(batch: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """(B, 3, 3) symmetric Gaussian matrices (A + A^T) / 2: a rotation-free random strain
    of unit scale."""
    a = torch.randn(batch, 3, 3, generator=generator)
    return (a + a.transpose(1, 2)) / 2


class Denoiser(nn.Module):
    """Predicts the unit Gaussian noise on atom positions, sum_j w_ij (r_ij / |r_ij|), and with
    `lattice_noise` the strain of the cell, mean_ij v_ij u_ij u_ij^T + s I."""

    def __init__(self, config: DenoiserConfig = DenoiserConfig()):
        super().__init__()
        self.config = c = config
        self.embed = nn.Embedding(101, c.hidden)
        self.sigma_embed = nn.Sequential(nn.Linear(1, c.hidden), nn.SiLU(),
                                         nn.Linear(c.hidden, c.hidden))
        self.expand = GaussianExpansion(c.cutoff, c.n_gaussians)
        edge_dim = c.n_gaussians + c.n_angular
        self.blocks = nn.ModuleList(EdgeBlock(c.hidden, edge_dim) for _ in range(c.n_layers))
        self.weight_center = nn.Linear(c.hidden, c.hidden)
        self.weight_neighbour = nn.Linear(c.hidden, c.hidden, bias=False)
        self.weight_edge = nn.Linear(edge_dim, c.hidden, bias=False)
        self.weight_out = nn.Linear(c.hidden, 1)
        if c.lattice_noise:  # zero-initialised: an untrained head leaves the cell as it is
            self.strain_out = nn.Linear(c.hidden, 1)  # per-edge weight of u u^T
            self.strain_iso = nn.Linear(c.hidden, 1)  # isotropic part from the mean atom state
            for layer in (self.strain_out, self.strain_iso):
                nn.init.zeros_(layer.weight)
                nn.init.zeros_(layer.bias)

    def log_sigma(self, sigma: torch.Tensor) -> torch.Tensor:
        """Noise level rescaled to [0, 1] over the trained range."""
        lo, hi = math.log(self.config.sigma_min), math.log(self.config.sigma_max)
        return (torch.log(sigma) - lo) / (hi - lo)

    def forward(self, crystals: PaddedCrystals, sigma: torch.Tensor) -> torch.Tensor:
        """Predicted noise (B, M, 3) for positions inside the cell at noise levels sigma (B,)."""
        return self.predict(crystals, sigma)[0]

    def tau(self, sigma: float | torch.Tensor) -> float | torch.Tensor:
        """Strain noise std at position noise level sigma."""
        return self.config.lattice_noise * sigma / self.config.sigma_max

    def predict(self, crystals: PaddedCrystals, sigma: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(unit position noise (B, M, 3), cell strain (B, 3, 3) or None without
        `lattice_noise`) for positions inside the cell at noise levels sigma (B,)."""
        c = self.config
        j, vectors = periodic_knn(crystals, c.k, c.images)
        dist = vectors.norm(dim=-1).clamp(min=1e-3)  # (B, M, k)
        e = self.expand(dist.reshape(-1)).reshape(*dist.shape, -1)
        if c.n_angular:
            e = torch.cat([e, bond_angles(vectors, dist, c.n_angular)], -1)
        h = self.embed(crystals.numbers) + self.sigma_embed(self.log_sigma(sigma)[:, None])[:, None]
        for block in self.blocks:
            h = block(h, j, e)
        edge = gather_neighbours(self.weight_neighbour(h), j)  # (B, M, k, H)
        edge += self.weight_center(h)[:, :, None]
        edge += self.weight_edge(e)
        edge = nn.functional.silu(edge)
        unit = vectors / dist[..., None]
        mask = crystals.mask[..., None].float()
        eps = (self.weight_out(edge) * unit).sum(2) * mask
        if not c.lattice_noise:
            return eps, None
        outer = unit[..., :, None] * unit[..., None, :]  # (B, M, k, 3, 3)
        per_atom = (self.strain_out(edge)[..., None] * outer).mean(2)  # (B, M, 3, 3)
        n_atoms = mask.sum(1).clamp(min=1)  # (B, 1)
        anisotropic = (per_atom * mask[..., None]).sum(1) / n_atoms[..., None]
        isotropic = self.strain_iso((h * mask).sum(1) / n_atoms)  # (B, 1)
        return eps, anisotropic + isotropic[..., None] * torch.eye(3)

    def draws_noise(self, *, noise: bool | None = None, start: StartPoint | None = None,
                    stochastic: bool | None = None, **_: Any) -> bool:
        """Whether `refine` with these options (None: the config's) draws random numbers:
        without, each crystal's refinement is the same whichever batch or process does it."""
        c = self.config
        return bool((c.refine_noise if noise is None else noise)
                    or (c.refine_start if start is None else start) == "random"
                    or (c.refine_stochastic if stochastic is None else stochastic))

    @torch.no_grad()
    def refine(self, crystals: PaddedCrystals, *, sigma_start: float | None = None,
               steps: int | None = None, noise: bool | None = None,
               start: StartPoint | None = None, stochastic: bool | None = None,
               cell: bool | None = None, passes: int | None = None,
               solver: Solver | None = None,
               generator: torch.Generator | None = None) -> PaddedCrystals:
        """Walk the positions (and with `cell`, by default on when the denoiser learnt cell
        strains, the lattice) down the noise ladder sigma_start -> sigma_min -> 0, `passes`
        times, each pass starting from the last one's result.

        `start="random"` discards the given positions and draws them uniformly in the cell
        (the large-noise limit on the torus; use it with sigma_start near sigma_max), so only
        lattice and species come from the input; it and `noise` apply to the first pass only.
        Steps are deterministic (probability-flow ODE) unless `stochastic`, which takes
        ancestral steps with fresh noise. A decoded crystal is not a sample of the training
        noise at sigma_start, so one deterministic pass leaves part of its error; later passes
        remove more of it (a noise-free form of restart sampling, Xu et al. 2023).

        Deterministic steps are Euler steps of the flow dx/dsigma = eps_hat, or with
        `solver="multistep"` second-order multistep ones (DPM-Solver++(2M), Lu et al. 2022):
        each step also uses the previous step's denoised estimate x - sigma * eps_hat, so it
        needs no extra network evaluation, and about half as many steps follow the flow as
        closely. The last step (to sigma 0) is the denoised estimate in both."""
        c = self.config
        sigma_start = c.refine_sigma if sigma_start is None else sigma_start
        steps = c.refine_steps if steps is None else steps
        noise = c.refine_noise if noise is None else noise
        start = c.refine_start if start is None else start
        stochastic = c.refine_stochastic if stochastic is None else stochastic
        cell = c.refines_cell if cell is None else cell
        passes = c.refine_passes if passes is None else passes
        solver = c.refine_solver if solver is None else solver
        if solver not in SOLVERS:
            raise ValueError(f"solver must be one of {SOLVERS}, got {solver!r}")
        if cell and not c.lattice_noise:
            raise ValueError("cell refinement needs a denoiser trained with lattice_noise > 0")
        if sigma_start <= 0 or steps < 1 or passes < 1:
            raise ValueError(f"sigma_start must be > 0 and steps, passes >= 1, got "
                             f"{sigma_start}, {steps} and {passes}")
        if start not in START_POINTS:
            raise ValueError(f"start must be one of {START_POINTS}, got {start!r}")
        sigmas = [*np.geomspace(sigma_start, c.sigma_min, steps).tolist(), 0.0]
        cart = crystals.cart
        mask = crystals.mask
        if start == "random":
            frac = torch.rand(cart.shape, generator=generator)
            cart = (frac @ crystals.lattice) * mask[..., None]
        elif noise:
            cart = cart + sigma_start * center(torch.randn(cart.shape, generator=generator), mask)
        for _ in range(passes):  # each pass starts where the last one ended
            last: tuple[torch.Tensor, float] | None = None  # previous (estimate, log step)
            for s, s_next in itertools.pairwise(sigmas):
                current = crystals.with_positions(crystals.wrapped(cart))
                if last is not None:  # move the last estimate as wrapping moved the atoms
                    last = (last[0] + (current.cart - cart), last[1])
                eps, strain = self.predict(current, torch.full((len(cart),), s))
                if stochastic and s_next > 0:
                    variance = s ** 2 - s_next ** 2
                    fresh = center(torch.randn(cart.shape, generator=generator), mask)
                    cart = (current.cart - variance / s * eps
                            + math.sqrt(variance) * s_next / s * fresh)
                else:
                    cart = current.cart - (s - s_next) * eps
                if solver == "multistep" and not stochastic and s_next > 0:
                    estimate, step = current.cart - s * eps, math.log(s / s_next)
                    if last is not None:
                        cart = cart + ((1 - s_next / s) * step / (2 * last[1])
                                       * (estimate - last[0]))
                    last = (estimate, step)
                crystals = current
                if cell:  # undo this step's share of the predicted strain
                    undo = torch.linalg.inv(torch.eye(3) + (1 - s_next / s) * strain)
                    crystals = current.strained(undo)
                    cart = cart @ undo
                    if last is not None:
                        last = (last[0] @ undo, last[1])
        return crystals.with_positions(crystals.wrapped(cart))

    def state(self) -> dict:
        """Config and weights, loadable with torch.load(weights_only=True)."""
        return {"config": self.config.to_dict(), "state_dict": self.state_dict()}

    def load_widened(self, other: Denoiser) -> None:
        """Start from a denoiser that sees fewer edge features (no bond angles) or has no cell
        head: its weights are copied, new edge columns start at zero (so the position
        predictions are unchanged) and a new cell head keeps its initialisation."""
        theirs = other.state_dict()
        mine = self.state_dict()
        new = set(mine) - set(theirs)
        if set(theirs) - set(mine) or any(not name.startswith("strain_") for name in new):
            raise ValueError("denoisers differ in more than their edge features and cell head")
        for name, value in theirs.items():
            target = mine[name]
            if value.shape == target.shape:
                target.copy_(value)
            elif value.ndim == 2 and value.shape[0] == target.shape[0] \
                    and value.shape[1] < target.shape[1]:
                target.zero_()
                target[:, :value.shape[1]] = value
            else:
                raise ValueError(f"{name}: cannot widen {tuple(value.shape)} to "
                                 f"{tuple(target.shape)}")

    @classmethod
    def from_state(cls, state: dict) -> Denoiser:
        model = cls(DenoiserConfig(**state["config"]))
        model.load_state_dict(state["state_dict"])
        return model.eval()


def center(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Remove each crystal's mean over its real atoms (a rigid translation is not noise)."""
    m = mask[..., None].float()
    mean = (x * m).sum(1, keepdim=True) / m.sum(1, keepdim=True).clamp(min=1)
    return (x - mean) * m
