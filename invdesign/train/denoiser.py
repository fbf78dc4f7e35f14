"""Training loop for the coordinate denoiser (denoising score matching on atom positions and,
optionally, on cell strains)."""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from pymatgen.core import Structure

from invdesign.featurize.frames import padded_positions
from invdesign.models.denoiser import (
    Denoiser,
    DenoiserConfig,
    PaddedCrystals,
    center,
    symmetric_noise,
)

EpochCallback = Callable[[int, "DenoiserHistory"], None]


@dataclass(frozen=True, kw_only=True)
class DenoiserTrainConfig:
    epochs: int = 200
    batch_size: int = 64
    lr: float = 1e-3
    patience: int = 30
    seed: int = 0
    val_draws: int = 4  # noise draws per validation crystal (fixed seed)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class DenoiserHistory:
    train_loss: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    best_epoch: int = -1
    seconds: float = 0.0


def noised(model: Denoiser, crystals: PaddedCrystals, generator: torch.Generator
           ) -> tuple[PaddedCrystals, torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Crystals with translation-free Gaussian noise at log-uniform levels, strained first when
    the model learns cells: (noisy crystals, sigma (B,), unit noise (B, M, 3), strain (B, 3, 3)
    or None)."""
    c = model.config
    u = torch.rand(len(crystals.cart), generator=generator)
    sigma = torch.exp(math.log(c.sigma_min) + u * (math.log(c.sigma_max) - math.log(c.sigma_min)))
    eps = center(torch.randn(crystals.cart.shape, generator=generator), crystals.mask)
    strain = None
    if c.lattice_noise:
        strain = model.tau(sigma)[:, None, None] * symmetric_noise(len(crystals.cart), generator)
        crystals = crystals.strained(torch.eye(3) + strain)
    noisy = crystals.with_positions(crystals.wrapped(crystals.cart + sigma[:, None, None] * eps))
    return noisy, sigma, eps, strain


def denoising_loss(model: Denoiser, crystals: PaddedCrystals, generator: torch.Generator
                   ) -> torch.Tensor:
    """Mean squared error of the predicted unit noise over real atoms, plus, when the model
    learns cells, that of the strain over its nine entries in units of `lattice_noise`."""
    noisy, sigma, eps, strain = noised(model, crystals, generator)
    pred, pred_strain = model.predict(noisy, sigma)
    mask = crystals.mask[..., None].float()
    loss = (((pred - eps) ** 2) * mask).sum() / (3 * mask.sum())
    if strain is not None:
        loss = loss + ((pred_strain - strain) ** 2).mean() / model.config.lattice_noise ** 2
    return loss


def _batches(crystals: PaddedCrystals, size: int, order: np.ndarray):
    for start in range(0, len(order), size):
        idx = torch.as_tensor(order[start:start + size])
        yield PaddedCrystals(crystals.lattice[idx], crystals.cart[idx], crystals.numbers[idx])


@torch.no_grad()
def evaluate_denoiser(model: Denoiser, crystals: PaddedCrystals, *, draws: int = 4,
                      seed: int = 12345, batch_size: int = 256) -> float:
    """Validation loss averaged over `draws` fixed-seed noise draws per crystal."""
    model.eval()
    gen = torch.Generator().manual_seed(seed)
    order = np.arange(len(crystals.cart))
    total, count = 0.0, 0
    for _ in range(draws):
        for batch in _batches(crystals, batch_size, order):
            total += denoising_loss(model, batch, gen).item() * len(batch.cart)
            count += len(batch.cart)
    return total / max(count, 1)


def train_denoiser(train: Sequence[Structure], val: Sequence[Structure],
                   config: DenoiserConfig | None = None,
                   train_config: DenoiserTrainConfig | None = None, *,
                   on_epoch: EpochCallback | None = None, init: Denoiser | None = None
                   ) -> tuple[Denoiser, DenoiserHistory]:
    """Fit a denoiser on the training crystals (starting from `init`'s weights when given; `init`
    may lack the bond-angle features or the cell head `config` adds); keeps the best validation
    epoch's weights."""
    config = config or DenoiserConfig()
    train_config = train_config or DenoiserTrainConfig()
    torch.manual_seed(train_config.seed)
    rng = np.random.default_rng(train_config.seed)
    gen = torch.Generator().manual_seed(train_config.seed)
    model = Denoiser(config)
    if init is not None:
        model.load_widened(init)
    data, held = (PaddedCrystals.from_arrays(*padded_positions(part)) for part in (train, val))
    optimizer = torch.optim.AdamW(model.parameters(), lr=train_config.lr)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, factor=0.5, patience=10,
                                                           min_lr=1e-5)
    history, best, best_state = DenoiserHistory(), math.inf, copy.deepcopy(model.state_dict())
    start = time.perf_counter()
    for epoch in range(train_config.epochs):
        model.train()
        total, count = 0.0, 0
        for batch in _batches(data, train_config.batch_size, rng.permutation(len(train))):
            loss = denoising_loss(model, batch, gen)
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
            optimizer.step()
            total += loss.item() * len(batch.cart)
            count += len(batch.cart)
        val_loss = evaluate_denoiser(model, held, draws=train_config.val_draws)
        scheduler.step(val_loss)
        history.train_loss.append(total / max(count, 1))
        history.val_loss.append(val_loss)
        if val_loss < best:
            best, history.best_epoch = val_loss, epoch
            best_state = copy.deepcopy(model.state_dict())
        if on_epoch is not None:
            on_epoch(epoch, history)
        if epoch - history.best_epoch > train_config.patience:
            break
    model.load_state_dict(best_state)
    history.seconds = time.perf_counter() - start
    return model.eval(), history
