"""Training loop for the crystal graph surrogate: masked multi-task loss, early stopping."""

from __future__ import annotations

import copy
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Literal

import numpy as np
import torch

from invdesign.featurize.batch import collate
from invdesign.featurize.graph import CrystalGraph
from invdesign.models.cgcnn import CGCNN

logger = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    """Optimisation settings for one ensemble member."""

    epochs: int = 120
    batch_size: int = 64
    lr: float = 3e-3
    weight_decay: float = 1e-4
    patience: int = 40
    loss: Literal["l1", "mse", "huber"] = "l1"
    seed: int = 0
    freeze_convolutions: bool = False

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class History:
    """Per-epoch training loss and validation MAE (transformed units, mean over targets)."""

    train_loss: list[float] = field(default_factory=list)
    val_mae: list[float] = field(default_factory=list)
    best_epoch: int = -1
    seconds: float = 0.0


def masked_loss(pred: torch.Tensor, target: torch.Tensor, kind: str) -> torch.Tensor:
    """Loss over the labelled entries only (NaN targets are missing labels)."""
    mask = ~torch.isnan(target)
    diff = pred[mask] - target[mask]
    if diff.numel() == 0:
        return pred.sum() * 0.0
    if kind == "l1":
        return diff.abs().mean()
    if kind == "mse":
        return (diff**2).mean()
    return torch.nn.functional.huber_loss(diff, torch.zeros_like(diff), delta=0.5)


def fit_scalers(model: CGCNN, graphs: Sequence[CrystalGraph], y: np.ndarray) -> None:
    """Set target and global-feature standardisation from the training data."""
    glob = collate(graphs).global_features.numpy()
    std, glob_std = np.nanstd(y, axis=0), glob.std(axis=0)
    # A feature constant in training (e.g. the number of elements in a set of binaries) keeps
    # unit scale, so an unseen value shifts it by O(1) instead of blowing up.
    model.set_scalers(np.nanmean(y, axis=0), np.where(std > 0, std, 1.0),
                      glob.mean(axis=0), np.where(glob_std > 1e-6, glob_std, 1.0))


@torch.no_grad()
def predict_transformed(model: CGCNN, graphs: Sequence[CrystalGraph],
                        batch_size: int = 256) -> np.ndarray:
    """Model outputs in the transformed target space, shape (n, n_targets)."""
    model.eval()
    out = [model.predict(collate(graphs[i:i + batch_size])).numpy()
           for i in range(0, len(graphs), batch_size)]
    return np.concatenate(out) if out else np.zeros((0, model.config.n_targets))


def masked_mae(pred: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Per-target MAE over labelled entries, shape (n_targets,)."""
    err = np.abs(pred - y)
    return np.array([np.nanmean(err[:, j]) if np.isfinite(err[:, j]).any() else np.nan
                     for j in range(y.shape[1])])


def _epoch(model, opt, graphs, y_std, config, rng) -> float:
    model.train()
    if config.freeze_convolutions:
        model.embed.eval()
        model.convs.eval()
    order = rng.permutation(len(graphs))
    total, n = 0.0, 0
    for start in range(0, len(order), config.batch_size):
        idx = order[start:start + config.batch_size]
        if len(idx) < 2:  # BatchNorm needs more than one graph
            continue
        loss = masked_loss(model(collate([graphs[i] for i in idx])),
                           torch.from_numpy(y_std[idx]), config.loss)
        opt.zero_grad()
        loss.backward()
        opt.step()
        total, n = total + loss.item() * len(idx), n + len(idx)
    return total / max(n, 1)


def train_model(
    model: CGCNN,
    train: tuple[Sequence[CrystalGraph], np.ndarray],
    val: tuple[Sequence[CrystalGraph], np.ndarray],
    config: TrainConfig = TrainConfig(),
    *,
    on_epoch: Callable[[int, float, float], None] | None = None,
    fit_normalisation: bool = True,
) -> History:
    """Train `model` in place on (graphs, transformed targets with NaN for missing).

    Keeps the weights of the epoch with the lowest validation MAE and stops after `patience`
    epochs without improvement.
    """
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    (train_graphs, y_train), (val_graphs, y_val) = train, val
    if fit_normalisation:
        fit_scalers(model, train_graphs, y_train)
    if config.freeze_convolutions:
        model.freeze_convolutions()
    y_std = ((y_train - model.target_mean.numpy()) / model.target_std.numpy()).astype(np.float32)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda e: 0.5 * (1 + math.cos(math.pi * min(e, config.epochs) / config.epochs)))
    history, best, best_state, start = History(), math.inf, None, time.perf_counter()
    for epoch in range(config.epochs):
        loss = _epoch(model, opt, train_graphs, y_std, config, rng)
        sched.step()
        val_mae = float(np.nanmean(masked_mae(predict_transformed(model, val_graphs), y_val)))
        history.train_loss.append(loss)
        history.val_mae.append(val_mae)
        if on_epoch is not None:
            on_epoch(epoch, loss, val_mae)
        if val_mae < best:
            best, best_state, history.best_epoch = val_mae, copy.deepcopy(model.state_dict()), epoch
        elif epoch - history.best_epoch >= config.patience:
            logger.info("early stop at epoch %d (best %d)", epoch, history.best_epoch)
            break
    if best_state is not None:
        model.load_state_dict(best_state)
    history.seconds = time.perf_counter() - start
    return history
