"""Score crystals for a design objective with a surrogate ensemble.

Every property the registry can derive from K and G (E, hardness, toughness, alpha, ...) is
computed for the ensemble's point prediction and for each member, so the objective comes with an
ensemble spread. Scores: `mean` (the objective), `lcb` (mean - kappa * std, cautious) or `ei`
(expected improvement over a reference value, exploratory).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pandas as pd
from pymatgen.core import Structure
from scipy.stats import norm

from invdesign.properties import Constraint, Objective, derive_all, parse_constraints
from invdesign.surrogate import G_NAME, K_NAME, Surrogate, to_physical

ScoreMode = Literal["mean", "lcb", "ei"]


@dataclass
class Scorer:
    """Objective, constraints and scoring rule for a surrogate's predictions.

    Attributes:
        objective: expression to maximise (or minimise with `minimize`).
        constraints: all must hold; `violation` measures how far they fail.
        mode: "mean", "lcb" (mean - kappa * std) or "ei" (expected improvement over `best`).
        kappa: weight of the ensemble spread in "lcb".
        best: incumbent objective value for "ei" (e.g. the best training value).
        temperature: T (K) for temperature-dependent properties (heat capacity, alpha).
    """

    objective: Objective
    constraints: list[Constraint] = field(default_factory=list)
    mode: ScoreMode = "mean"
    kappa: float = 1.0
    best: float | None = None
    minimize: bool = False
    temperature: float = 300.0

    @classmethod
    def parse(cls, objective: str, constraints: Sequence[str] | str | None = None,
              **kwargs) -> Scorer:
        """Parse the expressions first, so a bad request fails before any work starts."""
        mode = kwargs.get("mode", "mean")
        if mode not in ("mean", "lcb", "ei"):
            raise ValueError(f"score mode must be 'mean', 'lcb' or 'ei', got {mode!r}")
        return cls(Objective.parse(objective), parse_constraints(constraints), **kwargs)

    def check_surrogate(self, surrogate: Surrogate) -> None:
        """Raise when the objective or a constraint needs what the surrogate cannot give."""
        available = set(property_values(surrogate.targets, np.ones((1, 1, len(
            surrogate.targets))), np.ones(1), np.ones(1), self.temperature)[0])
        needed = set(self.objective.variables)
        for c in self.constraints:
            needed |= set(c.variables)
        missing = sorted(needed - available)
        if missing:
            raise ValueError(f"the surrogate predicts {surrogate.targets}; the objective or "
                             f"constraints also need {missing}, which cannot be derived from it")

    def sign(self) -> float:
        return -1.0 if self.minimize else 1.0

    def score(self, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
        """Score to maximise from the objective's point value and ensemble spread."""
        mean, std = self.sign() * mean, std
        if self.mode == "lcb":
            return mean - self.kappa * std
        if self.mode == "ei":
            best = self.sign() * (self.best if self.best is not None else np.nanmax(mean))
            s = np.maximum(std, 1e-12)
            u = (mean - best) / s
            return s * (u * norm.cdf(u) + norm.pdf(u))
        return mean

    def evaluate(self, surrogate: Surrogate, structures: Sequence[Structure], *,
                 n_jobs: int = 1) -> pd.DataFrame:
        """One row per structure: predicted properties (`_std` = member spread), `objective`,
        `objective_std`, `score`, `violation` (0 when every constraint holds); `n_jobs`
        processes featurise large batches."""
        if not len(structures):
            return pd.DataFrame(columns=["objective", "objective_std", "score", "violation"])
        graphs = surrogate.featurize(structures, n_jobs=n_jobs)
        raw = surrogate.predict_members(graphs, physical=False)  # (m, n, t) model space
        density = np.array([g.density for g in graphs])
        vpa = np.array([g.volume_per_atom for g in graphs])
        point, members = property_values(surrogate.targets, raw, density, vpa, self.temperature)
        table = pd.DataFrame({name: np.asarray(v, dtype=float) for name, v in point.items()})
        for name, value in members.items():
            if name not in ("density", "volume_per_atom"):
                with np.errstate(invalid="ignore"):
                    table[f"{name}_std"] = np.nanstd(value, axis=0)
        with np.errstate(all="ignore"):
            objective = self.objective.evaluate(point)
            objective_std = np.nanstd(self.objective.evaluate(members), axis=0)
        table["objective"] = objective
        table["objective_std"] = objective_std
        score = self.score(objective, objective_std)
        table["score"] = np.where(np.isfinite(score), score, -np.inf)
        violation = np.zeros(len(table))
        for c in self.constraints:
            violation += np.nan_to_num(c.violation(point), nan=np.inf)
        table["violation"] = violation
        return table


def property_values(targets: Sequence[str], raw: np.ndarray, density: np.ndarray,
                    volume_per_atom: np.ndarray, temperature: float
                    ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """(point, per-member) property dicts from member predictions (m, n, t) in model space.

    The point prediction is the member mean in model space (geometric mean for moduli); with K
    and G among the targets, every derived property is added.
    """
    targets = list(targets)
    point_t = to_physical(targets, raw.mean(0))
    member_t = to_physical(targets, raw)
    point = {name: point_t[:, j] for j, name in enumerate(targets)}
    members = {name: member_t[..., j] for j, name in enumerate(targets)}
    point.update(density=density, volume_per_atom=volume_per_atom)
    members.update(density=np.broadcast_to(density, member_t.shape[:2]),
                   volume_per_atom=np.broadcast_to(volume_per_atom, member_t.shape[:2]))
    if K_NAME in targets and G_NAME in targets:
        k, g = targets.index(K_NAME), targets.index(G_NAME)
        point.update(derive_all(point_t[:, k], point_t[:, g], density=density,
                                volume_per_atom=volume_per_atom, T=temperature))
        members.update(derive_all(member_t[..., k], member_t[..., g], density=density,
                                  volume_per_atom=volume_per_atom, T=temperature))
    return point, members


def pareto_rank(values: np.ndarray) -> np.ndarray:
    """Non-domination rank (0 = Pareto front) of rows of `values` (n, k), all maximised.

    NaN counts as the worst value.
    """
    v = np.where(np.isfinite(values), values, -np.inf)
    n = len(v)
    rank = np.full(n, -1)
    remaining = np.arange(n)
    level = 0
    while len(remaining):
        sub = v[remaining]
        dominated = ((sub[None, :, :] >= sub[:, None, :]).all(-1)
                     & (sub[None, :, :] > sub[:, None, :]).any(-1)).any(1)
        rank[remaining[~dominated]] = level
        remaining = remaining[dominated]
        level += 1
    return rank
