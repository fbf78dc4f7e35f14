"""Training loop for the crystal VAE.

Atom order and origin do not matter: the coordinate loss compares each crystal with the
decoder's slots after the permutation- and origin-free alignment of
`invdesign.models.reconstruction`.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace

import numpy as np
import torch
from torch.nn import functional

from invdesign.featurize.batch import GraphBatch, collate
from invdesign.featurize.frames import CrystalFrame
from invdesign.featurize.graph import CrystalGraph
from invdesign.models.reconstruction import reconstruction_targets
from invdesign.models.vae import CrystalVAE

logger = logging.getLogger(__name__)

@dataclass(frozen=True, kw_only=True)
class VAETrainConfig:
    """Optimisation settings of a VAE run."""

    epochs: int = 300
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.0
    beta: float = 0.01  # weight of the KL term after warm-up
    kl_warmup: int = 50  # epochs of linear KL annealing from 0 to beta
    coord_weight: float = 10.0
    count_weight: float = 1.0
    lattice_weight: float = 1.0
    property_weight: float = 1.0
    patience: int = 60
    seed: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class VAEHistory:
    train_loss: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    val_composition_accuracy: list[float] = field(default_factory=list)
    best_epoch: int = -1
    seconds: float = 0.0


@dataclass
class Example:
    """One training crystal: graph for the encoder, frame for the decoder, standardised y."""

    graph: CrystalGraph
    frame: CrystalFrame
    y: np.ndarray


def kl_divergence(mu: torch.Tensor, logvar: torch.Tensor, prior_mu: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, exp(logvar)) || N(prior_mu, I)) summed over latent dims, mean over the batch."""
    return 0.5 * (logvar.exp() + (mu - prior_mu) ** 2 - 1.0 - logvar).sum(1).mean()


def losses(model: CrystalVAE, batch: GraphBatch, frames: Sequence[CrystalFrame], y: torch.Tensor,
           config: VAETrainConfig, beta: float, *, sample: bool = True) -> dict[str, torch.Tensor]:
    """All loss terms of one batch (y standardised, NaN where a label is missing)."""
    mu, logvar = model.encode(batch)
    z = mu + torch.randn_like(mu) * (0.5 * logvar).exp() if sample else mu
    y_hat = model.predict_conditions(z)
    labelled = ~torch.isnan(y)
    y_in = torch.where(labelled, y, y_hat.detach())
    out = model.decode(z, y_in)
    t = reconstruction_targets(model, frames, out)
    n_classes = out.count_logits.shape[-1]
    coord_err = (1.0 - torch.cos(2.0 * math.pi * (out.coords - t["coords"]))).sum(-1)
    terms = {
        "counts": functional.cross_entropy(out.count_logits.reshape(-1, n_classes),
                                  t["counts"].reshape(-1), reduction="sum") / len(frames),
        "lattice": functional.mse_loss(out.lattice, t["lattice"]),
        "coords": coord_err[t["mask"]].mean() if t["mask"].any() else coord_err.sum() * 0.0,
        "kl": kl_divergence(mu, logvar, model.prior_mean(y_in)),
        "property": (functional.mse_loss(y_hat[labelled], y[labelled]) if labelled.any()
                     else y_hat.sum() * 0.0),
        "species": (functional.cross_entropy(out.species_logits, t["species"])
                    if out.species_logits is not None else y_hat.sum() * 0.0),
    }
    terms["total"] = (config.count_weight * (terms["counts"] + terms["species"])
                      + config.lattice_weight * terms["lattice"]
                      + config.coord_weight * terms["coords"]
                      + beta * terms["kl"] + config.property_weight * terms["property"])
    with torch.no_grad():
        same = (out.count_logits.argmax(-1) == t["counts"]).all(1).float().mean()
        terms["composition_accuracy"] = same
    return terms


def _batches(items: Sequence[Example], size: int, rng: np.random.Generator | None):
    order = rng.permutation(len(items)) if rng is not None else np.arange(len(items))
    for start in range(0, len(items), size):
        chunk = [items[i] for i in order[start:start + size]]
        yield (collate([e.graph for e in chunk]), [e.frame for e in chunk],
               torch.from_numpy(np.stack([e.y for e in chunk]).astype(np.float32)))


EpochCallback = Callable[[int, "VAEHistory"], None]


def train_vae(model: CrystalVAE, train: Sequence[Example], val: Sequence[Example],
              config: VAETrainConfig, *, on_epoch: EpochCallback | None = None
              ) -> VAEHistory:
    """Train in place with KL annealing; keeps the weights of the best validation epoch."""
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr,
                                  weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, factor=0.5, patience=20,
                                                           min_lr=1e-5)
    history = VAEHistory()
    best_key, best_state = (math.inf, math.inf), copy.deepcopy(model.state_dict())
    start = time.perf_counter()
    for epoch in range(config.epochs):
        beta = config.beta * min(1.0, (epoch + 1) / max(1, config.kl_warmup))
        model.train()
        total, count = 0.0, 0
        for batch, frames, y in _batches(train, config.batch_size, rng):
            if batch.n_graphs < 2:
                continue  # batch norm needs two crystals
            loss = losses(model, batch, frames, y, config, beta)["total"]
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
            optimizer.step()
            total += loss.item() * batch.n_graphs
            count += batch.n_graphs
        val_loss, val_acc = evaluate_loss(model, val, config)
        scheduler.step(val_loss)
        history.train_loss.append(total / max(count, 1))
        history.val_loss.append(val_loss)
        history.val_composition_accuracy.append(val_acc)
        # Select once the KL weight is final (annealing must not pick an epoch that was never
        # regularised), on exact-composition accuracy first: a crystal with one wrong atom is
        # a miss, however small its loss. The validation loss breaks ties.
        key = (-val_acc, val_loss)
        if epoch + 1 >= config.kl_warmup and key < best_key:
            best_key, history.best_epoch = key, epoch
            best_state = copy.deepcopy(model.state_dict())
        if on_epoch is not None:
            on_epoch(epoch, history)
        if history.best_epoch >= 0 and epoch - history.best_epoch > config.patience:
            break
    model.load_state_dict(best_state)
    history.seconds = time.perf_counter() - start
    return history


@torch.no_grad()
def evaluate_loss(model: CrystalVAE, items: Sequence[Example],
                  config: VAETrainConfig) -> tuple[float, float]:
    """Validation loss at the final KL weight (z = mean) and composition accuracy."""
    model.eval()
    total, acc, count = 0.0, 0.0, 0
    for batch, frames, y in _batches(items, 512, None):
        terms = losses(model, batch, frames, y, config, config.beta, sample=False)
        total += terms["total"].item() * batch.n_graphs
        acc += terms["composition_accuracy"].item() * batch.n_graphs
        count += batch.n_graphs
    return total / max(count, 1), acc / max(count, 1)


def fit_species_head(model: CrystalVAE, train: Sequence[Example], val: Sequence[Example], *,
                     epochs: int = 40, lr: float = 3e-3, batch_size: int = 128,
                     seed: int = 0) -> tuple[CrystalVAE, float]:
    """A copy of a trained VAE with a number-of-elements head fitted on top of its frozen
    decoder (for checkpoints trained before the head existed; every other weight is kept).

    The head learns from z drawn from each training crystal's posterior, as in training.

    Returns:
        (the new model, the head's validation accuracy at the posterior means).
    """
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    max_species = max(e.frame.n_species for e in train)
    new = CrystalVAE(replace(model.config, max_species=max_species))
    new.condition_bank = model.condition_bank.clone()
    missing, unexpected = new.load_state_dict(model.state_dict(), strict=False)
    if unexpected or any(not k.startswith("species_head.") for k in missing):
        raise ValueError(f"weights do not fit: missing {missing}, unexpected {unexpected}")
    new.eval()
    optimizer = torch.optim.Adam(new.species_head.parameters(), lr=lr)

    def hidden_and_target(batch, frames, y, sample: bool):
        with torch.no_grad():
            mu, logvar = new.encode(batch)
            z = mu + torch.randn_like(mu) * (0.5 * logvar).exp() if sample else mu
            y_hat = new.predict_conditions(z)
            y_in = torch.where(torch.isnan(y), y_hat, y)
            h = new.decoder(torch.cat([z, y_in], dim=1))
        target = torch.tensor([f.n_species - 1 for f in frames])
        return h, target.clamp(max=max_species - 1)

    for _ in range(epochs):
        for batch, frames, y in _batches(train, batch_size, rng):
            h, target = hidden_and_target(batch, frames, y, sample=True)
            loss = functional.cross_entropy(new.species_head(h), target)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    right, total = 0, 0
    for batch, frames, y in _batches(val, 512, None):
        h, target = hidden_and_target(batch, frames, y, sample=False)
        with torch.no_grad():
            right += int((new.species_head(h).argmax(1) == target).sum())
        total += len(frames)
    return new, right / max(total, 1)
