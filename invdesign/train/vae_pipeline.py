"""End-to-end VAE training: load, split, featurise, train, measure reconstruction, save."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, NamedTuple

import numpy as np
import pandas as pd
import torch
from pymatgen.core import Structure

from invdesign.data import CrystalDataset, Split, load_dataset
from invdesign.data.archive import write_structures
from invdesign.evaluate.reconstruction import cdvae_valid, match_rate_and_rmse
from invdesign.featurize.elements import element_feature_table
from invdesign.featurize.frames import crystal_frames
from invdesign.featurize.graph import GraphConfig, featurize_structures, n_global_features
from invdesign.generator import (
    REFERENCE_FILE,
    REFERENCE_PROPERTIES_FILE,
    REFINE_STEPS,
    Generator,
)
from invdesign.models.denoiser import DenoiserConfig
from invdesign.models.latent_prior import LatentMixture
from invdesign.models.vae import CrystalVAE, VAEConfig, lattice_features
from invdesign.plots import learning_curves
from invdesign.properties import derive_all
from invdesign.surrogate import G_NAME, K_NAME, to_model_space
from invdesign.train.denoiser import DenoiserHistory, DenoiserTrainConfig, train_denoiser
from invdesign.train.pipeline import file_sha256, make_split
from invdesign.train.vae import EpochCallback, Example, VAEHistory, VAETrainConfig, train_vae

logger = logging.getLogger(__name__)

# Latent-prior fits use posterior means by default; refined codes (e.g. REFINE_STEPS) won on
# vae-carbon24's validation split and lost on vae-perov5's and vae-mp-binary's (BENCHMARKS.md)
PRIOR_REFINE_STEPS = 0


@dataclass(frozen=True, kw_only=True)
class VAEArchitecture:
    latent: int = 64
    hidden: int = 128
    n_conv: int = 3
    decoder_hidden: int = 512


@dataclass(frozen=True, kw_only=True)
class VAERunConfig:
    """Everything that defines a VAE training run (saved in the checkpoint card)."""

    conditions: tuple[str, ...] = ()
    split: Literal["random", "composition"] = "random"
    fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)
    seed: int = 0
    max_atoms: int | None = None
    pressure: float = 0.0  # GPa at which the data's crystals were relaxed (`sample --relax`)
    graph: GraphConfig = field(default_factory=GraphConfig)
    architecture: VAEArchitecture = field(default_factory=VAEArchitecture)
    train: VAETrainConfig = field(default_factory=VAETrainConfig)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class VAERun:
    generator: Generator
    split: Split
    history: VAEHistory
    dataset: CrystalDataset

    def test_structures(self) -> list:
        return [self.dataset[int(i)].structure for i in self.split.test]


def build_model(graphs_train: Sequence, frames_train: Sequence, y_train: np.ndarray,
                config: VAERunConfig) -> CrystalVAE:
    """A fresh VAE whose vocabulary, size limit and scalers come from the training part only."""
    elements = sorted({int(z) for f in frames_train for z in f.atomic_numbers})
    max_atoms = config.max_atoms or max(f.n_atoms for f in frames_train)
    max_species = max(f.n_species for f in frames_train)
    arch = config.architecture
    model_config = VAEConfig(
        elements=tuple(elements), max_atoms=max_atoms,
        n_element_features=element_feature_table().shape[1],
        n_global_features=n_global_features(config.graph),
        n_conditions=len(config.conditions), latent=arch.latent, hidden=arch.hidden,
        n_conv=arch.n_conv, cutoff=config.graph.cutoff, decoder_hidden=arch.decoder_hidden,
        max_species=max_species)
    model = CrystalVAE(model_config, torch.from_numpy(element_feature_table()))
    glob = np.stack([g.global_features for g in graphs_train])
    lattice = lattice_features(torch.from_numpy(np.stack([f.lattice for f in frames_train])))
    has_y = y_train.shape[1] > 0
    y_mean = np.nanmean(y_train, 0) if has_y else np.zeros(0)
    y_std = np.nanstd(y_train, 0) + 1e-6 if has_y else np.ones(0)
    labelled = y_train[np.isfinite(y_train).all(1)] if has_y else y_train
    model.set_scalers(global_mean=glob.mean(0), global_std=glob.std(0) + 1e-6,
                      lattice_mean=lattice.mean(0), lattice_std=lattice.std(0) + 1e-3,
                      condition_mean=y_mean, condition_std=y_std,
                      condition_bank=(labelled - y_mean) / y_std)
    return model


def train_generator(data: str | Path, config: VAERunConfig = VAERunConfig(), *,
                    cache_dir: str | Path | None = None,
                    on_epoch: EpochCallback | None = None) -> VAERun:
    """Train a VAE on a dataset file; its test part is left for `evaluate_reconstruction`."""
    dataset = load_dataset(data, properties=list(config.conditions) or None,
                           max_atoms=config.max_atoms)
    logger.info("%s", dataset.summary)
    split = make_split(dataset, config.split, config.fractions, config.seed)
    if split.sizes[0] < 2 or split.sizes[1] < 1:
        raise ValueError(f"{data}: split {config.fractions} leaves {split.sizes} structures in "
                         "train/val/test; use more data")
    graphs = featurize_structures(dataset.structures, config.graph, cache_dir=cache_dir)
    frames = crystal_frames(dataset.structures)
    y = (to_model_space(config.conditions, dataset.targets(config.conditions))
         if config.conditions else np.zeros((len(dataset), 0), np.float32))
    tr, va = split.train, split.val
    torch.manual_seed(config.seed)  # the initial weights too: torch seeds each process afresh
    model = build_model([graphs[i] for i in tr], [frames[i] for i in tr], y[tr], config)
    y_std = (y - model.condition_mean.numpy()) / model.condition_std.numpy()

    def examples(idx: np.ndarray) -> list[Example]:
        keep = [i for i in idx if frames[i].n_atoms <= model.config.max_atoms
                and np.isin(frames[i].atomic_numbers, model.config.elements).all()]
        return [Example(graphs[i], frames[i], y_std[i]) for i in keep]

    history = train_vae(model, examples(tr), examples(va), config.train, on_epoch=on_epoch)
    generator = Generator(model=model, graph_config=config.graph, conditions=config.conditions)
    prior_report = fit_latent_prior(generator, *_decodable(generator, dataset, tr, y_std),
                                    *_decodable(generator, dataset, va, y_std), seed=config.seed)
    best = history.best_epoch
    generator.meta = {
        "data": {"path": str(data), "sha256": file_sha256(data), "n_records": len(dataset),
                 "skipped": len(dataset.summary.skipped), "pressure_gpa": config.pressure},
        "split": split.to_dict(),
        "run_config": config.to_dict(),
        "train_seconds": history.seconds,
        "best_epoch": best,
        "val_composition_accuracy": history.val_composition_accuracy[best] if best >= 0 else None,
        "latent_prior": prior_report,
    }
    return VAERun(generator, split, history, dataset)


def _decodable(generator: Generator, dataset: CrystalDataset, idx: np.ndarray,
               y_std: np.ndarray) -> tuple[list, np.ndarray]:
    """Structures at `idx` the decoder can represent (size, vocabulary) and their standardised
    conditions."""
    config = generator.config
    keep = [int(i) for i in idx if len(dataset[int(i)].structure) <= config.max_atoms
            and np.isin(dataset[int(i)].structure.atomic_numbers, config.elements).all()]
    return [dataset[i].structure for i in keep], y_std[keep]


def _encodings(generator: Generator, structures: Sequence, y_std: np.ndarray,
               refine_steps: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Posterior means (refined by `refine_steps` steps on each crystal's reconstruction
    error) and conditions; missing labels are filled by the property head, as in training."""
    mu = generator.encode(structures, refine_steps=refine_steps)[0]
    y = np.array(y_std, dtype=np.float32).reshape(len(mu), -1)
    if y.shape[1] and np.isnan(y).any():
        with torch.no_grad():
            head = generator.model.predict_conditions(torch.from_numpy(mu)).numpy()
        y = np.where(np.isnan(y), head, y)
    return mu, y


def fit_latent_prior(generator: Generator, train: Sequence, y_train: np.ndarray,
                     val: Sequence, y_val: np.ndarray, *, seed: int = 0,
                     refine_steps: int = PRIOR_REFINE_STEPS) -> dict[str, Any]:
    """Fit `generator.latent_prior` to the encodings of the training crystals, choosing the
    number of components on the validation crystals; returns the report kept in the card.

    With `refine_steps` > 0 the encodings are the codes the decoder actually reconstructs
    each crystal from (`Generator.encode(refine_steps=...)`), not the one-shot posterior
    means, so the mixture covers the latent region the decoder decodes well.
    """
    start = time.perf_counter()
    z, y = _encodings(generator, train, y_train, refine_steps)
    z_val, y_val = _encodings(generator, val, y_val, refine_steps)
    mixture, scores = LatentMixture.fit(z, y, z_val=z_val, y_val=y_val, seed=seed)
    generator.latent_prior = mixture
    what = ("refined latent codes" if refine_steps else "posterior means")
    report = {"what": f"Gaussian mixture over [z, y] of the training encodings ({what})",
              "refine_steps": refine_steps,
              "components": mixture.n_components, "n_train": len(z), "n_val": len(z_val),
              "val_log_likelihood": {str(k): v for k, v in scores.items()},
              "seconds": time.perf_counter() - start}
    generator.meta["latent_prior"] = report
    return report


def fit_checkpoint_latent_prior(generator: Generator, data: str | Path | None = None, *,
                                refine_steps: int = PRIOR_REFINE_STEPS) -> dict[str, Any]:
    """`fit_latent_prior` on the split stored in a checkpoint (to fit it again, or for
    checkpoints trained before the fitted prior existed)."""
    dataset, split = _checkpoint_data(generator, data)
    names = generator.conditions
    y_std = (generator.standardise(dataset.targets(names)).astype(np.float32) if names
             else np.zeros((len(dataset), 0), np.float32))
    return fit_latent_prior(generator, *_decodable(generator, dataset, split.train, y_std),
                            *_decodable(generator, dataset, split.val, y_std),
                            seed=int(generator.meta.get("run_config", {}).get("seed", 0)),
                            refine_steps=refine_steps)




def reference_properties(dataset: CrystalDataset, conditions: Sequence[str]) -> pd.DataFrame:
    """Labels of the training file (id, conditions, density, volume per atom and, with K and
    G, every derived property): the background of design plots and success rates."""
    structures = dataset.structures
    density = np.array([s.density for s in structures], dtype=float)
    vpa = np.array([s.volume / len(s) for s in structures], dtype=float)
    table = pd.DataFrame({"id": dataset.ids, "formula": [s.composition.reduced_formula
                                                         for s in structures]})
    y = dataset.targets(list(conditions)) if conditions else np.zeros((len(dataset), 0))
    for j, name in enumerate(conditions):
        table[name] = y[:, j]
    table["density"], table["volume_per_atom"] = density, vpa
    if K_NAME in conditions and G_NAME in conditions:
        derived = derive_all(table[K_NAME].to_numpy(), table[G_NAME].to_numpy(),
                             density=density, volume_per_atom=vpa)
        for name, value in derived.items():
            table[name] = value
    return table


def save_vae_run(run: VAERun, out: str | Path, extra_meta: dict[str, Any] | None = None) -> Path:
    """Write the checkpoint, its dataset's structures (the novelty reference) and the curve."""
    out = Path(out)
    run.generator.meta.update(extra_meta or {})
    run.generator.meta["reference"] = {
        "file": REFERENCE_FILE, "n": len(run.dataset),
        "what": "every structure of the training file (train, val and test parts)"}
    run.generator.save(out)
    write_structures(out / REFERENCE_FILE, run.dataset.structures, run.dataset.ids)
    reference_properties(run.dataset, run.generator.conditions).to_csv(
        out / REFERENCE_PROPERTIES_FILE, index=False)
    learning_curves([run.history.train_loss], [run.history.val_loss], out / "learning_curve.png",
                    val_label="validation loss")
    return out


def _checkpoint_data(generator: Generator, data: str | Path | None
                     ) -> tuple[CrystalDataset, Split]:
    """A checkpoint's training file, read as in training, and its stored split."""
    meta = generator.meta
    path = data or meta["data"]["path"]
    dataset = load_dataset(path, properties=generator.conditions or None,
                           max_atoms=meta["run_config"]["max_atoms"])
    split = Split.from_dict(meta["split"])
    if sum(split.sizes) != len(dataset):
        raise ValueError(f"{path} now has {len(dataset)} usable records; the checkpoint's split "
                         f"was made on {sum(split.sizes)}")
    return dataset, split


class SplitStructures(NamedTuple):
    """The structures of each part of a checkpoint's stored split."""

    train: list[Structure]
    val: list[Structure]
    test: list[Structure]


def split_structures(generator: Generator, data: str | Path | None = None) -> SplitStructures:
    """The training, validation and test structures of the split stored in a checkpoint, read
    from its training file once."""
    dataset, split = _checkpoint_data(generator, data)
    return SplitStructures(*([dataset[int(i)].structure for i in idx]
                             for idx in (split.train, split.val, split.test)))


def held_out_structures(generator: Generator, data: str | Path | None = None, *,
                        part: Literal["val", "test"] = "test") -> list[Structure]:
    """The test (or validation) part of the split stored in a checkpoint."""
    return getattr(split_structures(generator, data), part)


def train_checkpoint_denoiser(generator: Generator, data: str | Path | None = None, *,
                              config: DenoiserConfig | None = None,
                              train_config: DenoiserTrainConfig | None = None,
                              on_epoch=None, resume: bool = False) -> DenoiserHistory:
    """Fit a coordinate denoiser on a checkpoint's training split (its validation part for
    early stopping; the test part stays unseen) and attach it to the generator; `resume`
    continues from the checkpoint's own denoiser (same architecture, except that `config` may
    add bond-angle features or cell refinement (`lattice_noise`) it lacks)."""
    config = config or DenoiserConfig()
    train_config = train_config or DenoiserTrainConfig()
    dataset, split = _checkpoint_data(generator, data)
    limit = generator.config.max_atoms
    train, val = ([dataset[int(i)].structure for i in idx if len(dataset[int(i)].structure)
                   <= limit] for idx in (split.train, split.val))
    init = None
    if resume:
        if generator.denoiser is None:
            raise ValueError("resume: this checkpoint has no denoiser yet")
        init = generator.denoiser
        config = replace(init.config, refine_sigma=config.refine_sigma,
                         refine_steps=config.refine_steps, refine_noise=config.refine_noise,
                         refine_start=config.refine_start, refine_passes=config.refine_passes,
                         refine_solver=config.refine_solver,
                         n_angular=max(config.n_angular, init.config.n_angular),
                         lattice_noise=config.lattice_noise or init.config.lattice_noise)
    previous = generator.meta.get("denoiser") if resume else None
    model, history = train_denoiser(train, val, config, train_config, on_epoch=on_epoch,
                                    init=init)
    generator.denoiser = model
    generator.meta["denoiser"] = {
        "config": config.to_dict(), "train": train_config.to_dict(),
        "n_train": len(train), "n_val": len(val), "best_epoch": history.best_epoch,
        "epochs_run": len(history.val_loss), "best_val_loss": min(history.val_loss),
        "seconds": round(history.seconds, 1)}
    if previous is not None:
        generator.meta["denoiser"]["resumed_from"] = previous
    return history


def checkpoint_examples(generator: Generator, data: str | Path | None = None, *,
                        cache_dir: str | Path | None = None
                        ) -> tuple[list[Example], list[Example]]:
    """The training and validation examples of a checkpoint's stored split, standardised with
    its own scalers (to fit parts added after training)."""
    dataset, split = _checkpoint_data(generator, data)
    graphs = featurize_structures(dataset.structures, generator.graph_config,
                                  cache_dir=cache_dir)
    frames = crystal_frames(dataset.structures)
    names = generator.conditions
    y = (generator.standardise(dataset.targets(names)).astype(np.float32) if names
         else np.zeros((len(dataset), 0), np.float32))
    config = generator.config

    def examples(idx: np.ndarray) -> list[Example]:
        return [Example(graphs[i], frames[i], y[i]) for i in idx
                if frames[i].n_atoms <= config.max_atoms
                and np.isin(frames[i].atomic_numbers, config.elements).all()]

    return examples(split.train), examples(split.val)


def evaluate_reconstruction(generator: Generator, structures: Sequence, *,
                            refine_steps: int = REFINE_STEPS,
                            denoise: bool | None = None) -> dict[str, Any]:
    """CDVAE reconstruction metrics: encode each structure, decode, match.

    The headline `match_rate` / `rmse` use our encoder, the one-shot mean refined by
    `refine_steps` gradient steps on the crystal's reconstruction error; the `amortised_`
    keys give the one-shot encoder alone, the protocol CDVAE reports. As in CDVAE an invalid
    reconstruction is a miss, so a crystal that fails the validity checks itself can never
    be matched: `ground_truth_valid` (the share that passes) is the ceiling of `match_rate`,
    and `match_rate_any_validity` counts matches without the validity requirement.
    One-shot reconstructions are denoised when the checkpoint has a denoiser; refined ones
    only with `denoise=True` (`denoised` / `amortised_denoised` record what was done).
    """
    start = time.perf_counter()
    decoded = generator.reconstruct(structures, refine_steps=0)
    amortised = match_rate_and_rmse(decoded, structures)
    amortised_seconds = time.perf_counter() - start
    result: dict[str, Any] = {**amortised, "decode_seconds": amortised_seconds}
    if refine_steps > 0:
        start = time.perf_counter()
        decoded = generator.reconstruct(structures, refine_steps=refine_steps,
                                        denoise=denoise)
        result = {**match_rate_and_rmse(decoded, structures),
                  "decode_seconds": time.perf_counter() - start}
    result["match_rate_any_validity"] = match_rate_and_rmse(
        decoded, structures, require_valid=False)["match_rate"]
    result["ground_truth_valid"] = float(np.mean([cdvae_valid(s) for s in structures]))
    result.update({"refine_steps": refine_steps,
                   "amortised_match_rate": amortised["match_rate"],
                   "amortised_rmse": amortised["rmse"],
                   "amortised_decode_seconds": amortised_seconds,
                   "denoised": bool(denoise) if refine_steps > 0 else
                   generator.denoiser is not None,
                   "amortised_denoised": generator.denoiser is not None})
    return result
