"""End-to-end surrogate training: load -> split -> featurise -> ensemble -> test metrics -> save."""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from scipy.stats import spearmanr

from invdesign.data import (
    CrystalDataset,
    LabelTable,
    Split,
    composition_split,
    join_labels,
    kfold,
    load_dataset,
    random_split,
)
from invdesign.featurize.composition import composition_descriptors
from invdesign.featurize.domain import ApplicabilityDomain
from invdesign.featurize.graph import GraphConfig, featurize_structures, n_global_features
from invdesign.models.knn import KNNBaseline
from invdesign.plots import learning_curves
from invdesign.surrogate import Surrogate, to_model_space
from invdesign.train.ensemble import (
    ArchitectureConfig,
    EpochCallback,
    MemberResult,
    cross_validate,
    train_ensemble,
)
from invdesign.train.surrogate import TrainConfig, masked_mae

logger = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class SurrogateRunConfig:
    """Everything that defines a surrogate training run (saved in the checkpoint card)."""

    targets: tuple[str, ...] = ("bulk_modulus_vrh", "shear_modulus_vrh")
    split: Literal["random", "composition"] = "composition"
    fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)
    seed: int = 0
    train_fraction: float = 1.0  # < 1: a seeded subset of the training part (learning curves)
    n_members: int = 5
    workers: int = 2
    max_atoms: int | None = None
    graph: GraphConfig = field(default_factory=GraphConfig)
    architecture: ArchitectureConfig = field(default_factory=ArchitectureConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class RunResult:
    """A trained surrogate with its held-out metrics and learning curves."""

    surrogate: Surrogate
    split: Split
    metrics: dict[str, Any]
    members: list[MemberResult]


def file_sha256(path: str | Path) -> str:
    """Content hash of a data file (folders: hash of the sorted file hashes)."""
    path = Path(path)
    h = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for p in files:
        h.update(p.read_bytes())
    return h.hexdigest()


def make_split(dataset: CrystalDataset, method: str, fractions: Sequence[float], seed: int
               ) -> Split:
    """The run's train/val/test split: "composition" (grouped by reduced formula) or random."""
    if method == "composition":
        return composition_split(dataset, fractions, seed=seed)
    return random_split(len(dataset), fractions, seed=seed)


def evaluate_predictions(targets: Sequence[str], members: np.ndarray,
                         y: np.ndarray) -> dict[str, Any]:
    """Held-out metrics from member predictions (m, n, t) in the transformed space."""
    mean, std = members.mean(0), members.std(0)
    mae = masked_mae(mean, y)
    out: dict[str, Any] = {"n": len(y)}
    for j, name in enumerate(targets):
        have = np.isfinite(y[:, j])
        err = np.abs(mean[have, j] - y[have, j])
        rho = spearmanr(std[have, j], err).statistic if have.sum() > 2 else float("nan")
        out[name] = {"mae": float(mae[j]), "spearman_std_vs_abs_error": float(rho),
                     "member_mae": [float(masked_mae(m, y)[j]) for m in members]}
    return out


def knn_baseline_metrics(dataset: CrystalDataset, split: Split, y: np.ndarray,
                         targets: Sequence[str]) -> dict[str, float]:
    """Test MAE of the descriptor + kNN baseline on the same split (k chosen on val)."""
    x = composition_descriptors(dataset.structures)
    model = KNNBaseline().fit(x[split.train], y[split.train], x[split.val], y[split.val])
    mae = masked_mae(model.predict(x[split.test]), y[split.test])
    return {name: float(mae[j]) for j, name in enumerate(targets)} | {"k": model.k}


def train_surrogate(
    data: str | Path,
    config: SurrogateRunConfig = SurrogateRunConfig(),
    *,
    init_from: Surrogate | None = None,
    labels: LabelTable | None = None,
    cache_dir: str | Path | None = None,
    on_epoch: EpochCallback | None = None,
    cv_folds: int = 0,
) -> RunResult:
    """Train a surrogate ensemble on a dataset file and measure it on its held-out test split.

    Targets that `labels` provides (e.g. oracle labels of part of the records) are taken from
    it by record id, the rest from the data file; unlabelled records count as missing labels.
    The split depends on the data file only, so a checkpoint with extra label targets is
    tested on the same crystals. With `init_from` (transfer learning) member i starts from
    the checkpoint's member i, and output rows of targets both share are carried over.
    With `cv_folds >= 2`, also cross-validate one network per fold on train + val (grouped by
    reduced formula when the split is compositional); the test split stays untouched.
    """
    dataset = load_training_data(data, config, labels)
    y = to_model_space(config.targets, dataset.targets(config.targets))
    split = make_split(dataset, config.split, config.fractions, config.seed)
    split = subsample_train(split, config.train_fraction, config.seed)
    _check_split(split, config, f"{data} ({len(dataset)} usable records)")
    graphs = featurize_structures(dataset.structures, config.graph, cache_dir=cache_dir)
    model_config = config.architecture.model_config(
        len(config.targets), config.graph.cutoff, n_global_features(config.graph),
        n_angular=config.graph.angular)
    part = {name: ([graphs[i] for i in idx], y[idx])
            for name, idx in [("train", split.train), ("val", split.val), ("test", split.test)]}
    start = time.perf_counter()
    members = train_ensemble(model_config, part["train"], part["val"], config.train,
                             n_members=config.n_members, workers=config.workers,
                             init_state=transfer_states(init_from, config.targets)
                             if init_from else None,
                             on_epoch=on_epoch)
    train_seconds = time.perf_counter() - start
    surrogate = Surrogate(targets=config.targets, graph_config=config.graph,
                          model_config=model_config,
                          state_dicts=[m.state_dict for m in members])
    metrics = {
        "space": "log10 for moduli, else physical units",
        "test": evaluate_predictions(
            config.targets, surrogate.predict_members(part["test"][0], physical=False),
            part["test"][1]),
        "knn_baseline_test_mae": knn_baseline_metrics(dataset, split, y, config.targets),
        "train_seconds": train_seconds,
        "best_epochs": [m.history.best_epoch for m in members],
    }
    if cv_folds >= 2:
        metrics["cross_validation"] = _cross_validate(dataset, graphs, y, split, model_config,
                                                      config, cv_folds)
    surrogate.meta = {
        "data": {"path": str(data), "sha256": file_sha256(data), "n_records": len(dataset),
                 "skipped": len(dataset.summary.skipped)}
                | ({"labels": {"path": str(labels.path), "sha256": labels.sha256,
                               "labelled": _labelled_counts(dataset, labels)}}
                   if labels is not None else {}),
        "split": split.to_dict(),
        "run_config": config.to_dict(),
        "metrics": metrics,
        "domain": training_domain(dataset, split, config.targets).to_dict(),
    }
    if init_from is not None:
        source_test = init_from.meta.get("metrics", {}).get("test", {})
        surrogate.meta["init_from"] = {
            "created": init_from.meta.get("created"), "version": init_from.meta.get("version"),
            "targets": list(init_from.targets),
            "test_mae": {t: m["mae"] for t, m in source_test.items() if isinstance(m, dict)}}
    return RunResult(surrogate, split, metrics, members)


def training_domain(dataset: CrystalDataset, split: Split, targets: Sequence[str]
                    ) -> ApplicabilityDomain:
    """The applicability domain of the training part: its formulas, element counts and the
    range of each target's labels (physical units)."""
    idx = split.train
    labels = dataset.targets(targets)[idx]
    return ApplicabilityDomain.from_training(
        [dataset.structures[i].composition.reduced_formula for i in idx],
        {name: labels[:, j] for j, name in enumerate(targets)})


def load_training_data(data: str | Path, config: SurrogateRunConfig,
                       labels: LabelTable | None = None) -> CrystalDataset:
    """The data file's records with the targets, label-table targets joined by id."""
    from_labels = [t for t in config.targets if labels is not None and t in labels.properties]
    from_file = [t for t in config.targets if t not in from_labels]
    dataset = load_dataset(data, properties=from_file or None, max_atoms=config.max_atoms)
    logger.info("%s", dataset.summary)
    if labels is None:
        return dataset
    dataset = join_labels(dataset, labels)
    for name, count in _labelled_counts(dataset, labels).items():
        if name in from_labels and count == 0:
            raise ValueError(f"{labels.path}: none of its ids matches a record of {data}, so "
                             f"target {name!r} has no labels")
        logger.info("%s: %d records of %s labelled with %s", labels.path, count, data, name)
    return dataset


def _labelled_counts(dataset: CrystalDataset, labels: LabelTable) -> dict[str, int]:
    y = dataset.targets(labels.properties)
    return {name: int(np.isfinite(y[:, j]).sum()) for j, name in enumerate(labels.properties)}


def transfer_states(source: Surrogate, targets: Sequence[str]) -> list[dict[str, torch.Tensor]]:
    """One initial state per source member for a network predicting `targets`.

    Every tensor but the output layer and the target scalers is copied as is; those get the
    rows of targets the source also predicts, and zero rows (the training mean) for new ones.
    """
    states = []
    for state in source.state_dicts:
        state = dict(state)
        for key in _TARGET_ROWS:
            old = state[key]
            rows = (torch.ones if key == "target_std" else torch.zeros)(
                (len(targets), *old.shape[1:]), dtype=old.dtype)
            for j, name in enumerate(targets):
                if name in source.targets:
                    rows[j] = old[source.targets.index(name)]
            state[key] = rows
        states.append(state)
    return states


_TARGET_ROWS = ("head.5.weight", "head.5.bias", "target_mean", "target_std")


def subsample_train(split: Split, fraction: float, seed: int) -> Split:
    """The split with only a seeded `fraction` of its training part (val and test unchanged)."""
    if not 0 < fraction <= 1:
        raise ValueError(f"train_fraction must be in (0, 1], got {fraction}")
    if fraction == 1:
        return split
    rng = np.random.default_rng(seed)
    keep = rng.choice(split.train, size=max(1, round(fraction * len(split.train))), replace=False)
    return replace(split, train=np.sort(keep))


def _check_split(split: Split, config: SurrogateRunConfig, source: str) -> None:
    """Fail before training when a part is too small to train, stop early or test on."""
    for part_name, size, least in zip(("train", "val", "test"), split.sizes, (2, 1, 1),
                                      strict=True):
        if size < least:
            raise ValueError(
                f"{source}: the {config.split} split {config.fractions} leaves {size} "
                f"structure(s) in '{part_name}'; use more data, other fractions or "
                "--split random")


def _cross_validate(dataset, graphs, y, split, model_config, config, k) -> dict[str, Any]:
    pool = np.concatenate([split.train, split.val])
    groups = ([dataset[int(i)].structure for i in pool] if config.split == "composition"
              else len(pool))
    folds = [(pool[tr], pool[va]) for tr, va in kfold(groups, k, seed=config.seed)]
    maes = cross_validate(model_config, graphs, y, folds, config.train, workers=config.workers)
    return {"k": k, **{name: {"mae_mean": float(maes[:, j].mean()),
                              "mae_std": float(maes[:, j].std())}
                       for j, name in enumerate(config.targets)}}


def save_run(run: RunResult, out: str | Path) -> Path:
    """Write the checkpoint folder plus `learning_curve.png`."""
    out = Path(out)
    run.surrogate.save(out)
    learning_curves([m.history.train_loss for m in run.members],
                    [m.history.val_mae for m in run.members], out / "learning_curve.png",
                    val_label="validation MAE (log10 GPa for moduli)")
    return out
