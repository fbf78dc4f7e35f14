"""The property surrogate as users see it: structures in, predictions with uncertainty out.

A `Surrogate` bundles the graph settings, a deep ensemble of `CGCNN` networks and the target
transforms; `predict` returns physical units (GPa for moduli) with the ensemble spread, plus the
properties derived from K and G (Young's modulus, hardness, toughness, thermal expansion, ...).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from pymatgen.core import Structure

from invdesign.data.validate import MAX_Z
from invdesign.featurize.domain import ApplicabilityDomain
from invdesign.featurize.graph import CrystalGraph, GraphConfig, featurize_structures
from invdesign.models.cgcnn import CGCNNConfig
from invdesign.models.checkpoint import load_checkpoint, save_checkpoint
from invdesign.models.ensemble import Ensemble
from invdesign.properties import derive_all, get_property, is_known

logger = logging.getLogger(__name__)

KIND = "surrogate"
K_NAME, G_NAME = "bulk_modulus_vrh", "shear_modulus_vrh"


def checkpoints_dir() -> Path:
    """Folder of the shipped checkpoints (`$INVDESIGN_CHECKPOINTS` overrides)."""
    env = os.environ.get("INVDESIGN_CHECKPOINTS")
    return Path(env) if env else Path(__file__).resolve().parent.parent / "checkpoints"


def resolve_checkpoint(name_or_path: str | Path) -> Path:
    """A checkpoint folder from a path or the name of a shipped checkpoint."""
    path = Path(name_or_path)
    if path.is_dir():
        return path
    shipped = checkpoints_dir() / str(name_or_path)
    if shipped.is_dir():
        return shipped
    available = sorted(p.name for p in checkpoints_dir().glob("*") if p.is_dir())
    raise FileNotFoundError(f"no checkpoint folder {name_or_path!r}; shipped checkpoints: "
                            f"{', '.join(available) or 'none'}")


def is_log_target(name: str) -> bool:
    return is_known(name) and get_property(name).transform == "log10"


def to_model_space(names: Sequence[str], y: np.ndarray) -> np.ndarray:
    """Physical targets (n, t) -> transformed space (log10 for moduli); NaN stays NaN."""
    out = np.array(y, dtype=np.float64)
    for j, name in enumerate(names):
        if is_log_target(name):
            with np.errstate(invalid="ignore", divide="ignore"):
                out[:, j] = np.where(out[:, j] > 0, np.log10(out[:, j]), np.nan)
    return out.astype(np.float32)


def to_physical(names: Sequence[str], y: np.ndarray) -> np.ndarray:
    """Transformed predictions (..., t) -> physical units."""
    out = np.array(y, dtype=np.float64)
    for j, name in enumerate(names):
        if is_log_target(name):
            out[..., j] = 10.0 ** out[..., j]
    return out


class Surrogate:
    """A deep ensemble of crystal graph networks for named target properties."""

    def __init__(self, *, targets: Sequence[str], graph_config: GraphConfig,
                 model_config: CGCNNConfig, state_dicts: Sequence[dict[str, torch.Tensor]],
                 meta: dict[str, Any] | None = None):
        self.targets = list(targets)
        self.graph_config = graph_config
        self.model_config = model_config
        self.state_dicts = list(state_dicts)
        self.meta = dict(meta or {})
        self.ensemble = Ensemble(model_config, self.state_dicts)

    @property
    def n_members(self) -> int:
        return len(self.state_dicts)

    @property
    def domain(self) -> ApplicabilityDomain | None:
        """The training data's element counts, chemistry and label ranges, when the card
        records them (`meta["domain"]`)."""
        payload = self.meta.get("domain")
        return ApplicabilityDomain.from_dict(payload) if payload is not None else None

    @classmethod
    def load(cls, name_or_path: str | Path) -> Surrogate:
        """Load a checkpoint folder, or a shipped checkpoint by name (e.g. "surrogate-elastic")."""
        payload = load_checkpoint(resolve_checkpoint(name_or_path), kind=KIND)
        config = payload["config"]
        return cls(targets=config["targets"], graph_config=GraphConfig(**config["graph"]),
                   model_config=CGCNNConfig(**config["model"]),
                   state_dicts=payload["state_dicts"], meta=payload["meta"])

    def save(self, folder: str | Path) -> Path:
        """Write the checkpoint folder (weights.pt + card.json)."""
        config = {"targets": self.targets, "graph": asdict(self.graph_config),
                  "model": self.model_config.to_dict()}
        return save_checkpoint(folder, kind=KIND, config=config, state_dicts=self.state_dicts,
                               meta=self.meta)

    def featurize(self, structures: Sequence[Structure], **kwargs: Any) -> list[CrystalGraph]:
        return featurize_structures(structures, self.graph_config, **kwargs)

    def predict_members(self, graphs: Sequence[CrystalGraph], *,
                        physical: bool = True) -> np.ndarray:
        """Member predictions, shape (n_members, n, n_targets), in physical units or (with
        `physical=False`) in the model's transformed space (log10 for moduli)."""
        raw = self.ensemble.predict(graphs)
        return to_physical(self.targets, raw) if physical else raw

    def predict(self, structures: Sequence[Structure], ids: Sequence[str] | None = None, *,
                derived: bool = True, temperature: float = 300.0,
                domain: bool = False) -> pd.DataFrame:
        """One row per structure: `id`, each target and `<target>_std` in physical units.

        Log-transformed targets (moduli) are reported as the geometric mean over members; `_std`
        is the spread of the members in physical units. With `derived` and both K and G among
        the targets, derived properties and their ensemble spread are added. A structure with
        an element beyond `MAX_Z` gets a row of NaN (logged) instead of failing the batch.
        With `domain` and a checkpoint that records its training domain, the columns of
        `ApplicabilityDomain.assess` (`composition_distance`, `in_domain`, `domain_note`)
        say which predictions are extrapolations.
        """
        table = self._predict(structures, ids, derived=derived, temperature=temperature)
        known = self.domain if domain else None
        if known is not None:
            formulas = [s.composition.reduced_formula for s in structures]
            checked = known.assess(formulas, {t: table[t] for t in self.targets})
            table = pd.concat([table, checked], axis=1)
        return table

    def _predict(self, structures: Sequence[Structure], ids: Sequence[str] | None, *,
                 derived: bool, temperature: float) -> pd.DataFrame:
        ids = list(ids) if ids is not None else [str(i) for i in range(len(structures))]
        heavy = [i for i, s in enumerate(structures)
                 if max((e.Z for e in s.composition.elements), default=0) > MAX_Z]
        if heavy:
            logger.warning("no prediction for %d structure(s) with elements beyond Z = %d "
                           "(first: %s)", len(heavy), MAX_Z, ids[heavy[0]])
            skip = set(heavy)
            good = [i for i in range(len(structures)) if i not in skip]
            part = self._predict([structures[i] for i in good], [ids[i] for i in good],
                                 derived=derived, temperature=temperature)
            full = part.set_index(pd.Index(good)).reindex(range(len(structures)))
            full["id"] = ids
            return full.reset_index(drop=True)
        graphs = self.featurize(structures)
        raw = self.predict_members(graphs, physical=False)
        members, point = to_physical(self.targets, raw), to_physical(self.targets, raw.mean(0))
        table: dict[str, Any] = {"id": ids}
        for j, name in enumerate(self.targets):
            table[name] = point[:, j]
            table[f"{name}_std"] = members[..., j].std(0)
        if derived and K_NAME in self.targets and G_NAME in self.targets:
            table.update(self._derived(point, members, graphs, temperature))
        return pd.DataFrame(table)

    def _derived(self, point: np.ndarray, members: np.ndarray, graphs: Sequence[CrystalGraph],
                 temperature: float) -> dict[str, np.ndarray]:
        """Derived properties from the point K, G; `_std` is their spread over the members."""
        k, g = self.targets.index(K_NAME), self.targets.index(G_NAME)
        geo = dict(density=np.array([gr.density for gr in graphs]),
                   volume_per_atom=np.array([gr.volume_per_atom for gr in graphs]), T=temperature)
        values = derive_all(point[:, k], point[:, g], **geo)
        spread = derive_all(members[..., k], members[..., g], **geo)
        out = {}
        for name, value in values.items():
            if name in (K_NAME, G_NAME):
                continue
            out[name] = value
            if name not in ("density", "volume_per_atom"):
                with np.errstate(invalid="ignore"):
                    out[f"{name}_std"] = np.nanstd(spread[name], axis=0)
        return out
