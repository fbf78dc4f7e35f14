"""The inverse-design API: `invdesign.load(name)` -> a `Designer` that samples and optimises.

A `Designer` joins a generator (the crystal VAE), a surrogate ensemble that scores candidates,
and the generator's training structures for novelty. Every candidate it returns has been checked
for validity, uniqueness and novelty; `optimize` ranks only candidates that passed all three.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch
from pymatgen.core import Composition, Element, Structure

from invdesign.data.archive import read_structures
from invdesign.design.candidates import SAMPLE_PREFIX, Candidates, candidate_id
from invdesign.design.latent import cma_es, gradient_ascent, soft_geometry, trust_radius
from invdesign.design.scoring import ScoreMode, Scorer, pareto_rank
from invdesign.featurize.domain import MIN_FORMULAS, ApplicabilityDomain, CompositionDomain
from invdesign.generator import (
    REFERENCE_FILE,
    REFERENCE_PROPERTIES_FILE,
    SCREEN,
    Condition,
    Generator,
    Prior,
)
from invdesign.progress import StageProgress
from invdesign.properties import derive_all
from invdesign.surrogate import G_NAME, K_NAME, Surrogate, resolve_checkpoint
from invdesign.validity import (
    MIN_BOND_RATIO,
    TYPICAL_BOND_RATIO,
    ReferenceIndex,
    check_structures,
    composition_validity,
    expand_to_bond_ratio,
    min_bond_ratio,
    min_bond_ratios,
    structure_validity,
)

logger = logging.getLogger(__name__)

ASHBY_PAIRS = (("thermal_expansion", "youngs_modulus"), ("fracture_toughness", "hardness_chen"))
ALIASES = {"mp-binary": "vae-mp-binary", "perov5": "vae-perov5", "perov-5": "vae-perov5",
           "carbon24": "vae-carbon24", "carbon-24": "vae-carbon24"}
Method = Literal["cmaes", "gradient", "both"]


def load(name_or_path: str | Path = "mp-binary", *, surrogate: str | Path | None = "auto"
         ) -> Designer:
    """A `Designer` from a shipped generator name ("mp-binary", "perov5", "carbon24") or a
    checkpoint folder; `surrogate="auto"` takes the scorer named in the generator's card."""
    return Designer.load(name_or_path, surrogate=surrogate)


class Designer:
    """Generator + surrogate + novelty reference: sample and optimise crystals."""

    def __init__(self, generator: Generator, surrogate: Surrogate | None = None,
                 reference: Sequence[Structure] | None = None,
                 reference_properties: pd.DataFrame | None = None,
                 checkpoint: Path | None = None):
        self.generator = generator
        self.checkpoint = checkpoint  # the generator's folder, when loaded from one
        self.reference_properties = reference_properties
        self.surrogate = surrogate
        self._reference_structures = reference
        self._reference_index: ReferenceIndex | None = None
        self.applicability: ApplicabilityDomain | None = None  # what the surrogate has seen
        if reference_properties is not None and "formula" in reference_properties:
            targets = surrogate.targets if surrogate is not None else []
            try:
                self.applicability = ApplicabilityDomain.from_training(
                    reference_properties["formula"].dropna(),
                    {t: reference_properties[t] for t in targets if t in reference_properties})
            except ValueError:  # no usable formula: predictions are only checked for NaN
                logger.info("no applicability domain: no usable training formula")
            else:
                if self.applicability.composition is None:
                    logger.info("no composition domain: fewer than %d distinct formulas",
                                MIN_FORMULAS)

    @classmethod
    def load(cls, name_or_path: str | Path = "mp-binary", *,
             surrogate: str | Path | None = "auto") -> Designer:
        folder = resolve_checkpoint(ALIASES.get(str(name_or_path), name_or_path))
        generator = Generator.load(folder)
        if surrogate == "auto":
            surrogate = generator.meta.get("surrogate")
        scorer = Surrogate.load(surrogate) if surrogate else None
        reference = (read_structures(folder / REFERENCE_FILE)[0]
                     if (folder / REFERENCE_FILE).is_file() else None)
        labels = (read_labels(folder / REFERENCE_PROPERTIES_FILE)
                  if (folder / REFERENCE_PROPERTIES_FILE).is_file() else None)
        return cls(generator, scorer, reference, labels, checkpoint=folder)

    @property
    def domain(self) -> CompositionDomain | None:
        """Nearest-training-composition check (None without enough training formulas)."""
        return self.applicability.composition if self.applicability is not None else None

    @property
    def reference_structures(self) -> Sequence[Structure]:
        """The generator's training structures (empty when the checkpoint has none)."""
        return self._reference_structures or []

    @property
    def reference(self) -> ReferenceIndex | None:
        """Novelty index over the generator's training structures (built on first use)."""
        if self._reference_index is None and self._reference_structures is not None:
            self._reference_index = ReferenceIndex(self._reference_structures)
        return self._reference_index

    # ----- assessment -------------------------------------------------------------------------
    def assess(self, structures: Sequence[Structure | None], *, prefix: str = "cand",
               scorer: Scorer | None = None, n_jobs: int = 1,
               progress: StageProgress | None = None) -> Candidates:
        """Validity, uniqueness, novelty and predicted properties of decoded structures
        (`n_jobs` processes for the checks of large batches; `progress` hears the check
        stages "validity", "uniqueness" and "novelty", as in `check_structures`)."""
        decoded = np.array([s is not None for s in structures], dtype=bool)
        table = pd.DataFrame({"id": [candidate_id(prefix, i) for i in range(len(structures))]})
        table["decoded"] = decoded
        flags = check_structures([s for s in structures if s is not None],
                                 reference=self.reference, n_jobs=n_jobs, progress=progress)
        full = pd.DataFrame(index=range(len(structures)), columns=flags.columns)
        full.loc[decoded] = flags.to_numpy()
        full.loc[~decoded, ["struct_valid", "comp_valid", "valid", "unique", "novel",
                            "struct_valid_cdvae"]] = False
        full.loc[~decoded, "reason"] = "decoding failed (empty composition or degenerate cell)"
        full.loc[~decoded, "n_atoms"] = 0
        for col in ("struct_valid", "comp_valid", "valid", "unique", "struct_valid_cdvae"):
            full[col] = full[col].astype(bool)
        full["novel"] = (full["novel"].astype("boolean") if self.reference is not None
                         else pd.array([pd.NA] * len(full), dtype="boolean"))
        table = pd.concat([table, full], axis=1)
        ok = [i for i, s in enumerate(structures) if s is not None and table.at[i, "struct_valid"]]
        ratio = np.full(len(structures), np.nan)
        ratio[ok] = min_bond_ratios([structures[i] for i in ok], n_jobs=n_jobs)
        table["bond_ratio"] = ratio
        table["plausible"] = ratio >= MIN_BOND_RATIO
        if self.surrogate is not None and ok:
            scorer = scorer or Scorer.parse(K_NAME if K_NAME in self.surrogate.targets
                                            else self.surrogate.targets[0])
            scores = scorer.evaluate(self.surrogate, [structures[i] for i in ok], n_jobs=n_jobs)
            scores.index = ok
            table = table.join(scores)
            domain = self._assess_domain(table)
            if self.domain is not None:
                table["composition_distance"] = domain["composition_distance"].to_numpy()
            table["in_domain"] = domain["in_domain"].to_numpy()
        return Candidates(list(structures), table)

    def in_domain(self, table: pd.DataFrame) -> np.ndarray:
        """True where the number of elements, the chemistry (`CompositionDomain`: no farther
        from the training compositions than held-out ones are) and every predicted target lie
        within the training data's range: beyond it the surrogate extrapolates (a model
        trained on binaries knows nothing of elemental or ternary phases, nor of molecular
        solids such as OF2), and an optimiser would chase its errors."""
        return self._assess_domain(table)["in_domain"].to_numpy(dtype=bool)

    def _assess_domain(self, table: pd.DataFrame) -> pd.DataFrame:
        """`ApplicabilityDomain.assess` of a scored table (all inside without a surrogate;
        all outside when a target column is missing)."""
        n = len(table)
        if self.surrogate is None or any(t not in table for t in self.surrogate.targets):
            inside = self.surrogate is None
            return pd.DataFrame({"composition_distance": np.full(n, np.nan),
                                 "in_domain": np.full(n, inside)})
        predictions = {t: table[t].to_numpy(dtype=float) for t in self.surrogate.targets}
        domain = self.applicability or ApplicabilityDomain.unknown()
        formulas = (table["formula"].tolist() if "formula" in table and
                    self.applicability is not None else None)
        return domain.assess(formulas, predictions, n=n)

    # ----- sampling ---------------------------------------------------------------------------
    def sample(self, n: int, conditions: Mapping[str, Condition] | None = None, *,
               seed: int = 0, temperature: float = 1.0,
               elements: Iterable[str] | None = None, max_atoms: int | None = None,
               prior: Prior = "auto", screen: int = SCREEN, denoise: bool | None = None,
               refine_passes: int | None = None, refine_cell: bool | None = None,
               charge_balance: bool = True, stoichiometry: bool | None = None,
               best_of: int | None = None, n_jobs: int = 1,
               progress: StageProgress | None = None) -> Candidates:
        """n crystals from p(x | conditions), each assessed: `draw`, then
        `assess_samples` (`progress` hears the sampling and the check stages)."""
        structures, requested = self.draw(n, conditions, seed=seed, temperature=temperature,
                                          elements=elements, max_atoms=max_atoms, prior=prior,
                                          screen=screen, denoise=denoise,
                                          refine_passes=refine_passes,
                                          refine_cell=refine_cell,
                                          charge_balance=charge_balance,
                                          stoichiometry=stoichiometry, best_of=best_of,
                                          progress=progress)
        return self.assess_samples(structures, requested, n_jobs=n_jobs, progress=progress)

    def draw(self, n: int, conditions: Mapping[str, Condition] | None = None, *,
             seed: int = 0, temperature: float = 1.0,
             elements: Iterable[str] | None = None, max_atoms: int | None = None,
             prior: Prior = "auto", screen: int = SCREEN, denoise: bool | None = None,
             refine_passes: int | None = None, refine_cell: bool | None = None,
             charge_balance: bool = True, stoichiometry: bool | None = None,
             best_of: int | None = None, progress: StageProgress | None = None,
             n_jobs: int = 1) -> tuple[list[Structure | None], np.ndarray]:
        """n crystals from p(x | conditions), not yet checked, and the conditions requested
        for each (n, C) in physical units. `prior`, `screen`, `denoise`, `refine_passes`,
        `refine_cell`, `best_of`, `progress` and `n_jobs` as in `Generator.sample`. With
        `charge_balance`, a decoded composition that fails SMACT's charge-balance rule is
        replaced by the decoder's most probable one that passes (`charge_balanced`), where
        one is among its top choices; with `stoichiometry` (default: where the checkpoint has
        them) it must also have one of the training crystals' stoichiometric patterns."""
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        structures, _, y = self.generator.sample(n, conditions, seed=seed,
                                                 temperature=temperature, elements=elements,
                                                 max_atoms=max_atoms, prior=prior,
                                                 screen=screen, denoise=denoise,
                                                 refine_passes=refine_passes,
                                                 refine_cell=refine_cell,
                                                 stoichiometry=stoichiometry,
                                                 best_of=best_of,
                                                 progress=progress, n_jobs=n_jobs,
                                                 accept=charge_balanced if charge_balance
                                                 else None)
        return structures, self.generator.to_physical(y)

    def assess_samples(self, structures: Sequence[Structure | None], requested: np.ndarray,
                       *, n_jobs: int = 1, progress: StageProgress | None = None
                       ) -> Candidates:
        """`assess` drawn samples (ids "sample-00000", ...) and add their requested
        conditions (`requested_<name>` columns)."""
        cands = self.assess(structures, prefix=SAMPLE_PREFIX, n_jobs=n_jobs,
                            progress=progress)
        for j, name in enumerate(self.generator.conditions):
            cands.table[f"requested_{name}"] = requested[:, j]
        return cands

    # ----- optimisation -----------------------------------------------------------------------
    def optimize(self, objective: str | Sequence[str], n: int = 100, *,
                 constraints: Sequence[str] | str | None = None,
                 elements: Iterable[str] | None = None, max_atoms: int | None = None,
                 method: Method = "both", score: ScoreMode = "mean", kappa: float = 1.0,
                 budget: int = 3000, seed: int = 0, minimize: bool = False,
                 refine_cell: bool | None = None) -> Candidates:
        """Search the latent space for valid, unique, novel crystals that maximise `objective`.

        Decoded compositions are charge-balanced and, where the generator records the
        stoichiometric patterns of its training crystals, of those kinds (as `draw` decodes).

        Args:
            objective: expression over property names (e.g. "E * alpha"); several expressions
                rank candidates by Pareto front first, then by the first expression.
            n: number of candidates to return (fewer if the search found fewer).
            constraints: e.g. ["K > 50", "density < 5"]; candidates breaking one rank last.
            elements: only these elements may appear.
            max_atoms: at most this many atoms per cell.
            method: "cmaes" (scores decoded candidates with the surrogate ensemble),
                "gradient" (ascent through the property head) or "both" (two fifths of the
                budget on gradient ascent, the rest on CMA-ES; they find different
                chemistry).
            score: "mean", "lcb" (mean - kappa * std) or "ei" (expected improvement).
            budget: decoded candidates to evaluate in all.
            refine_cell: whether the denoiser also refines the shortlist's decoded cells
                (default: as its card says) or keeps them (False: more novel, less typical).

        Returns:
            Candidates ranked best first, all valid, unique, novel, plausible (no pair closer
            than `MIN_BOND_RATIO` of its atomic radii; tighter cells than typical, expanded to
            `TYPICAL_BOND_RATIO` before scoring) and in the surrogate's domain (`in_domain`).
        """
        objectives = [objective] if isinstance(objective, str) else list(objective)
        if not objectives:
            raise ValueError("give at least one objective")
        scorers = [Scorer.parse(o, constraints, mode=score, kappa=kappa, minimize=minimize)
                   for o in objectives]
        if self.surrogate is None:
            raise ValueError("optimize needs a surrogate to score candidates; load one with "
                             "invdesign.load(..., surrogate='surrogate-elastic')")
        for s in scorers:
            s.check_surrogate(self.surrogate)
        if method not in ("cmaes", "gradient", "both"):
            raise ValueError(f"method must be 'cmaes', 'gradient' or 'both', got {method!r}")
        if elements is not None:
            elements = list(elements)
            self.generator.allowed_columns(elements)  # raises when none can be decoded
        if max_atoms is not None and max_atoms < 1:
            raise ValueError(f"max_atoms must be >= 1, got {max_atoms}")
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        self.generator.check_refinement(refine_cell=refine_cell)
        search = _Search(self, scorers[0], elements, max_atoms, refine_cell=refine_cell)
        start = time.perf_counter()
        starts = self._starting_points(scorers[0], seed)
        if method in ("gradient", "both"):
            share = (budget * 2) // 5 if method == "both" else budget
            search.gradient(starts, share, seed)
        if method in ("cmaes", "both"):
            search.cmaes(starts, budget - search.evaluated, seed)
        ranked = self._rank(search, scorers, n)
        for extra in range(1, 3):  # too few distinct survivors: widen the search, twice at most
            if len(ranked) >= n:
                break
            search.cmaes(starts[extra * 8:], budget // 2, seed + 100 * extra)
            ranked = self._rank(search, scorers, n)
        logger.info("searched %d latent points in %.1f s", search.evaluated,
                    time.perf_counter() - start)
        if len(ranked) < n:
            logger.warning(
                "only %d of the %d candidates asked for: of %d decoded latent points, %d were "
                "usable and inside the surrogate's domain (element count, chemistry, predicted "
                "range), in %d formulas; allow more elements or raise the budget", len(ranked),
                n, search.evaluated, len(search.structures), len(search.found))
        return ranked

    def _starting_points(self, scorer: Scorer, seed: int, k: int = 48) -> np.ndarray:
        """Encoded training structures that the property head rates best, plus prior draws."""
        rng = np.random.default_rng(seed)
        # the Gaussian prior's wider draws spread the search (measured with it, issue #5)
        prior = self.generator.sample(k // 3, seed=seed, prior="gaussian", denoise=False)[1]
        if not self._reference_structures:
            return prior
        pick = rng.choice(len(self._reference_structures),
                          min(512, len(self._reference_structures)), replace=False)
        mu, _ = self.generator.encode([self._reference_structures[i] for i in pick])
        value = _head_objective(self.generator, scorer, mu)
        best = mu[np.argsort(-np.nan_to_num(value, nan=-np.inf))[:k]]
        return np.concatenate([best, prior])

    def _rank(self, search: _Search, scorers: list[Scorer], n: int) -> Candidates:
        cands = self.assess(search.shortlist(n), prefix="opt", scorer=scorers[0])
        table = cands.table
        keep = (table["valid"] & table["unique"] & table["novel"].fillna(True).astype(bool)
                & table["plausible"] & table.get("in_domain", False)).to_numpy(dtype=bool)
        pool = cands.filter(keep)
        if not len(pool):
            return pool
        columns = [pool.table["score"].to_numpy(dtype=float)]
        for j, extra in enumerate(scorers[1:], start=1):
            scored = extra.evaluate(self.surrogate, pool.structures)
            pool.table[f"objective_{j}"] = scored["objective"].to_numpy()
            columns.append(scored["score"].to_numpy(dtype=float))
        values = np.column_stack(columns)
        feasible = pool.table["violation"].to_numpy(dtype=float) <= 0
        rank = pareto_rank(values) if len(scorers) > 1 else np.zeros(len(pool), dtype=int)
        pool.table["pareto_rank"] = rank
        order = np.lexsort((-values[:, 0], rank, ~feasible))
        ranked = pool.take(order[:n])
        ranked.table["rank"] = np.arange(1, len(ranked) + 1)
        return ranked


def read_labels(path: Path) -> pd.DataFrame:
    """A reference_properties.csv; ids and formulas stay text (sodium nitride is "NaN")."""
    table = pd.read_csv(path, keep_default_na=False, dtype=str)
    for col in table.columns:
        if col not in ("id", "formula"):
            table[col] = pd.to_numeric(table[col], errors="coerce")
    return table


def _head_objective(generator: Generator, scorer: Scorer, z: np.ndarray) -> np.ndarray:
    """Objective from the property head's K, G and the decoder's density and volume."""
    with torch.no_grad():
        props = _head_inputs(generator)(torch.as_tensor(z, dtype=torch.float32))
    return _objective_of(scorer, {k: v.double().numpy() for k, v in props.items()})


def _head_inputs(generator: Generator):
    """z -> differentiable {K, G, density, volume_per_atom} (needs a K, G-conditioned VAE)."""
    model = generator.model
    try:
        k, g = generator.condition_index(K_NAME), generator.condition_index(G_NAME)
    except KeyError as err:
        raise ValueError("gradient ascent needs a generator conditioned on bulk and shear "
                         "modulus; use method='cmaes'") from err

    def inputs(z: torch.Tensor) -> dict[str, torch.Tensor]:
        y = model.predict_conditions(z)
        out = model.decode(z, y)
        density, vpa = soft_geometry(model, out)
        space = y * model.condition_std + model.condition_mean  # log10 GPa
        return {K_NAME: 10.0 ** space[:, k], G_NAME: 10.0 ** space[:, g], "density": density,
                "volume_per_atom": vpa}

    return inputs


def _objective_of(scorer: Scorer, values: dict[str, np.ndarray]) -> np.ndarray:
    with np.errstate(all="ignore"):
        derived = derive_all(values[K_NAME], values[G_NAME], density=values["density"],
                             volume_per_atom=values["volume_per_atom"], T=scorer.temperature)
        return scorer.sign() * scorer.objective.evaluate(derived)


class _Search:
    """Bookkeeping of one optimisation: every decoded candidate and its score."""

    def __init__(self, designer: Designer, scorer: Scorer, elements: list[str] | None,
                 max_atoms: int | None, per_formula: int = 3,
                 refine_cell: bool | None = None):
        self.designer = designer
        self.refine_cell = refine_cell
        self.scorer = scorer
        self.elements = elements
        self.max_atoms = max_atoms
        self.per_formula = per_formula
        self.structures: list[Structure] = []  # usable, in-domain candidates
        self.scores: list[float] = []
        self.refined: dict[int, Structure | None] = {}  # denoised shortlist entries, by index
        self.found: Counter[str] = Counter()  # in-domain candidates per reduced formula
        self.evaluated = 0
        self.radius = trust_radius(designer.generator.config.latent)
        # decoded compositions: charge-balanced, of the checkpoint's kinds of formula if it
        # records them (as `sample` decodes them)
        self.accept = designer.generator.with_stoichiometry(charge_balanced)

    def evaluate(self, z: np.ndarray, y: np.ndarray | None = None) -> np.ndarray:
        """Decode, screen cheaply, score with the surrogate; -inf for unusable candidates.

        Candidates outside the surrogate's domain or breaking a constraint score far below
        every valid one, and so does a formula already found `per_formula` times: the
        optimiser is steered to new chemistry instead of re-decoding what it has (the
        ranking keeps at most `per_formula` per formula anyway). The recorded scores, which
        the ranking uses, carry only the constraint and domain penalties.
        """
        self.evaluated += len(z)
        decoded = self.designer.generator.decode(z, y, elements=self.elements,
                                                 max_atoms=self.max_atoms,
                                                 accept=self.accept, denoise=False)
        scores = np.full(len(z), -np.inf)
        ready = [design_ready(s) for s in decoded]
        usable = [i for i, s in enumerate(ready) if s is not None]
        if not usable:
            return scores
        structures = [ready[i] for i in usable]
        table = self.scorer.evaluate(self.designer.surrogate, structures)
        table["formula"] = [s.composition.reduced_formula for s in structures]
        in_domain = self.designer.in_domain(table)
        penalty = table["violation"].to_numpy(dtype=float) + ~in_domain
        raw = table["score"].to_numpy(dtype=float)
        floor = 1e3 * max(np.abs(raw[np.isfinite(raw)]).max(initial=0.0), 1.0)
        recorded = np.where(penalty > 0, raw - floor - penalty, raw)
        steer = recorded.copy()
        for j, formula in enumerate(table["formula"]):
            if not in_domain[j]:
                continue
            if self.found[formula] >= self.per_formula:
                steer[j] = raw[j] - floor
            self.found[formula] += 1
            self.structures.append(structures[j])
            self.scores.append(float(recorded[j]))
        scores[usable] = steer
        return scores

    def shortlist(self, n: int, factor: int = 5) -> list[Structure]:
        """The best-scored in-domain candidates for the (slower) uniqueness and novelty
        checks: at most `per_formula` per reduced formula, `factor * n` (>= 200) in all.

        The search scores one-shot decodings (thousands of them); with a denoiser only the
        shortlist is denoised, each candidate once however often the search re-ranks, and
        screened again (`design_ready`); one that fails drops out."""
        per_formula = self.per_formula
        order = np.argsort(-np.asarray(self.scores), kind="stable")
        seen: dict[str, int] = {}
        keep: list[int] = []
        for i in order:
            formula = self.structures[i].composition.reduced_formula
            if seen.get(formula, 0) < per_formula:
                seen[formula] = seen.get(formula, 0) + 1
                keep.append(int(i))
            if len(keep) >= max(factor * n, 200):
                break
        generator = self.designer.generator
        if generator.denoiser is None:
            return [self.structures[i] for i in keep]
        todo = [i for i in keep if i not in self.refined]
        denoised = generator.denoise([self.structures[i] for i in todo], cell=self.refine_cell)
        self.refined.update(zip(todo, map(design_ready, denoised), strict=True))
        return [s for s in (self.refined[i] for i in keep) if s is not None]

    def gradient(self, starts: np.ndarray, budget: int, seed: int) -> None:
        """Ascend from every start (and jittered copies while the budget allows)."""
        generator = self.designer.generator
        steps, every = 60, 10
        rows = max(1, budget // (steps // every))
        rng = np.random.default_rng(seed)
        z0 = starts[np.arange(rows) % len(starts)]
        z0 = z0 + 0.3 * (np.arange(rows) >= len(starts))[:, None] * rng.standard_normal(z0.shape)
        scorer = self.scorer
        snapshots = gradient_ascent(
            generator.model, lambda values: _objective_of(scorer, values),
            _head_inputs(generator), z0.astype(np.float32), radius=self.radius, steps=steps,
            snapshot_every=every)
        for z in snapshots:
            self.evaluate(z)

    def cmaes(self, starts: np.ndarray, budget: int, seed: int, runs: int = 8) -> None:
        """Short CMA-ES runs from the best starting points in turn, for diversity, restarted
        from the next start whenever one converges early, until `budget` is spent."""
        if budget <= 0:
            return
        per_run = max(64, budget // runs)
        end = self.evaluated + budget
        for r in range(4 * runs):  # bounded: a run always evaluates at least one population
            if self.evaluated >= end:
                break
            cma_es(self.evaluate, starts[r % len(starts)], radius=self.radius, sigma0=0.7,
                   budget=min(per_run, end - self.evaluated), popsize=16, seed=seed + r)


def charge_balanced(counts: Mapping[int, int]) -> bool:
    """CDVAE's compositional validity (SMACT charge balance and Pauling test; single elements
    and all-metal alloys pass) of {atomic number: count}."""
    return _charge_balanced(tuple(sorted((int(z), int(n)) for z, n in counts.items())))


@lru_cache(maxsize=65536)
def _charge_balanced(counts: tuple[tuple[int, int], ...]) -> bool:
    # decoders repeat compositions thousands of times: one SMACT check each
    composition = Composition({Element.from_Z(z): n for z, n in counts})
    return composition_validity(composition).valid


def design_ready(structure: Structure | None) -> Structure | None:
    """A decoded candidate as the search scores it, or None when unusable.

    Cheap screen: no atoms closer than 0.5 A, a sane volume per atom, and no pair squeezed
    below `MIN_BOND_RATIO` of its atomic radii. A cell tighter than a typical known crystal
    is then expanded to `TYPICAL_BOND_RATIO`: otherwise the optimiser learns that squeezing
    the decoded cell raises the surrogate's moduli (before this, half of the top 100
    `E * alpha` candidates had a bond ratio below 0.79, which 0.5 % of MP binaries show).
    """
    if structure is None or not structure_validity(structure):
        return None
    ratio = min_bond_ratio(structure)
    if ratio < MIN_BOND_RATIO:
        return None
    expanded = expand_to_bond_ratio(structure, TYPICAL_BOND_RATIO, current=ratio)
    if expanded is structure:  # already valid, nothing moved
        return structure
    return expanded if structure_validity(expanded) else None


def generate(objective: str | Sequence[str] = "E * alpha", n: int = 100, *,
             out: str | Path | None = None, model: str | Path = "mp-binary",
             surrogate: str | Path | None = "auto", file_format: str = "cif",
             plot: bool = True,
             refine: Callable[[Designer, Candidates], Candidates] | None = None,
             **optimize_kwargs: Any) -> Candidates:
    """Load the shipped models, optimise, apply `refine` (e.g. the physics screen of
    `invdesign.screening`) and (with `out`) write candidates.csv, structure files and an
    Ashby-style `ashby.png` (candidates over the training data)."""
    designer = Designer.load(model, surrogate=surrogate)
    best = designer.optimize(objective, n, **optimize_kwargs)
    if refine is not None:
        best = refine(designer, best)
    if out is not None:
        best.write(out, format=file_format)  # type: ignore[arg-type]
        if plot and designer.reference_properties is not None and len(best):
            from invdesign.plots import ashby

            pairs = [p for p in ASHBY_PAIRS if all(c in best.table and c in
                                                    designer.reference_properties for c in p)]
            if pairs:
                ashby({c: designer.reference_properties[c].to_numpy() for p in pairs for c in p},
                      {c: best.table[c].to_numpy(dtype=float) for p in pairs for c in p},
                      pairs, Path(out) / "ashby.png",
                      labels={"thermal_expansion": "alpha (1/K, Debye-Grueneisen)",
                              "youngs_modulus": "E (GPa)", "hardness_chen": "hardness (GPa)",
                              "fracture_toughness": "toughness (MPa m^0.5)"})
    return best
