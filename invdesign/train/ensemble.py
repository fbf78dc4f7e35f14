"""Deep-ensemble training of the graph surrogate, with k-fold cross-validation and transfer."""

from __future__ import annotations

import logging
import multiprocessing as mp
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import asdict, dataclass, replace

import numpy as np
import torch

from invdesign.featurize.elements import element_feature_table
from invdesign.featurize.graph import CrystalGraph
from invdesign.models.cgcnn import CGCNN, CGCNNConfig
from invdesign.models.ensemble import Ensemble
from invdesign.train.surrogate import History, TrainConfig, masked_mae, train_model

logger = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class ArchitectureConfig:
    """Network size (the target count and element features are filled in from the data)."""

    hidden: int = 64
    n_conv: int = 3
    n_gaussians: int = 40
    head_hidden: int = 128
    dropout: float = 0.0

    def model_config(self, n_targets: int, cutoff: float, n_global: int,
                     n_angular: int = 0) -> CGCNNConfig:
        return CGCNNConfig(n_targets=n_targets, n_element_features=element_feature_table().shape[1],
                           n_global_features=n_global, cutoff=cutoff, n_angular=n_angular,
                           **asdict(self))


@dataclass
class MemberResult:
    """One trained ensemble member."""

    seed: int
    state_dict: dict[str, torch.Tensor]
    history: History


def build_model(config: CGCNNConfig, init_state: dict[str, torch.Tensor] | None = None) -> CGCNN:
    """A fresh network with the element table loaded, optionally initialised from a state dict.

    With `init_state` (transfer learning) every tensor whose name and shape match is copied; heads
    for a different number of targets keep their fresh initialisation.
    """
    model = CGCNN(config, torch.from_numpy(element_feature_table()))
    if init_state is not None:
        own = model.state_dict()
        matched = {k: v for k, v in init_state.items() if k in own and own[k].shape == v.shape}
        model.load_state_dict(matched, strict=False)
        logger.info("transfer: initialised %d/%d tensors", len(matched), len(own))
    return model


EpochCallback = Callable[[int, int, float, float], None]  # (member seed, epoch, loss, val MAE)


def _train_member(args) -> MemberResult:
    config, init_state, train, val, train_config, queue = args
    torch.set_num_threads(1)
    torch.manual_seed(train_config.seed)  # each member's initial weights follow its seed
    model = build_model(config, init_state)
    report = None if queue is None else (
        lambda epoch, loss, val_mae: queue.put((train_config.seed, epoch, loss, val_mae)))
    # Scalers are refitted even when transferring: they feed the heads, which always train.
    history = train_model(model, train, val, train_config, on_epoch=report)
    return MemberResult(train_config.seed, {k: v.clone() for k, v in model.state_dict().items()},
                        history)


def _run_jobs(jobs: list[tuple], workers: int,
              on_epoch: EpochCallback | None) -> list[MemberResult]:
    """Run `_train_member` jobs (args without the queue) serially or in spawned processes."""
    if workers <= 1 or len(jobs) == 1:
        queue = _DirectQueue(on_epoch) if on_epoch else None
        return [_train_member((*job, queue)) for job in jobs]
    ctx = mp.get_context("spawn")
    with ctx.Manager() as manager, ProcessPoolExecutor(workers, mp_context=ctx) as pool:
        queue = manager.Queue()
        futures = [pool.submit(_train_member, (*job, queue)) for job in jobs]
        pending = set(futures)
        while pending:
            _, pending = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
            while not queue.empty():
                event = queue.get()
                if on_epoch:
                    on_epoch(*event)
        return [f.result() for f in futures]


def train_ensemble(
    model_config: CGCNNConfig,
    train: tuple[Sequence[CrystalGraph], np.ndarray],
    val: tuple[Sequence[CrystalGraph], np.ndarray],
    train_config: TrainConfig = TrainConfig(),
    *,
    n_members: int = 5,
    workers: int = 1,
    init_state: dict[str, torch.Tensor] | Sequence[dict[str, torch.Tensor]] | None = None,
    on_epoch: EpochCallback | None = None,
) -> list[MemberResult]:
    """Train `n_members` networks that differ by seed (init and batch order).

    `init_state` (transfer learning) is one state for every member or a list of states, member
    i starting from state i modulo the list's length.

    With `workers > 1` members train in parallel processes, one torch thread each; `on_epoch`
    hears about every epoch of every member either way.
    """
    states = [init_state] if init_state is None or isinstance(init_state, dict) else init_state
    jobs = [(model_config, states[i % len(states)], train, val,
             replace(train_config, seed=train_config.seed + i)) for i in range(n_members)]
    return _run_jobs(jobs, workers, on_epoch)


class _DirectQueue:
    """Stands in for a process queue when members train in this process."""

    def __init__(self, callback: EpochCallback):
        self.callback = callback

    def put(self, event: tuple[int, int, float, float]) -> None:
        self.callback(*event)


def cross_validate(
    model_config: CGCNNConfig,
    graphs: Sequence[CrystalGraph],
    y: np.ndarray,
    folds: Sequence[tuple[np.ndarray, np.ndarray]],
    train_config: TrainConfig = TrainConfig(),
    *,
    workers: int = 1,
) -> np.ndarray:
    """k-fold CV of a single network per fold: per-fold, per-target MAE (n_folds, n_targets).

    Each fold's held-out part doubles as its early-stopping set, so CV scores are mildly
    optimistic; report the held-out test split for final numbers.
    """
    sets = [(([graphs[i] for i in tr], y[tr]), ([graphs[i] for i in va], y[va]))
            for tr, va in folds]
    jobs = [(model_config, None, tr_set, va_set,
             replace(train_config, seed=train_config.seed + fold))
            for fold, (tr_set, va_set) in enumerate(sets)]
    members = _run_jobs(jobs, workers, None)
    return np.array([
        masked_mae(Ensemble(model_config, [m.state_dict]).predict(va_set[0])[0], va_set[1])
        for m, (_, va_set) in zip(members, sets, strict=True)])
