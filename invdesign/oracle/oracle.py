"""One oracle run on one structure: relax -> elastic tensor -> thermal expansion (AGL's
Debye-Grueneisen model by default, phonon QHA with phonopy as the slower option).

`run_oracle` never raises for a bad structure: cheap pre-checks (overlapping atoms, isolated
atoms, elements the potential does not know, disorder) and every failure inside a stage become
the result's `status` ("ok" or "failed: <reason>"), with whatever was computed before it.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from ase import Atoms
from pymatgen.core import Element, Structure

from invdesign.data.validate import closest_contact
from invdesign.oracle.calculators import (
    DEFAULT_CALCULATOR,
    CalculatorName,
    get_calculator,
    supported_elements,
)
from invdesign.oracle.elastic import DEFAULT_STRAINS, elastic_tensor
from invdesign.oracle.phonons import phonon_thermal_expansion
from invdesign.oracle.relax import Optimizer, RelaxationRunawayError, relax, to_structure
from invdesign.oracle.thermal import (
    DEFAULT_N_VOLUMES,
    GruneisenModel,
    agl_debye_temperature,
    thermal_expansion,
)
from invdesign.properties.derived import poisson_ratio, youngs_modulus

__all__ = ["CSV_COLUMNS", "LABEL_PROPERTIES", "OracleConfig", "OracleResult", "run_oracle"]

logger = logging.getLogger(__name__)

CSV_COLUMNS: tuple[str, ...] = (
    "id", "formula", "K_vrh", "G_vrh", "E", "alpha_300K", "debye_temperature", "gruneisen",
    "relax_rmsd", "energy_per_atom", "mechanically_stable", "status", "seconds",
    "n_atoms", "mass_amu", "poisson", "eos_V0", "eos_B0", "eos_B1", "calculator",
    "thermal_method",
)
# "n_atoms" .. "eos_B1" (added 2026-11-30) let the thermal expansion be recomputed from the
# fitted EOS for another Poisson ratio (`calibration.calibrated_results`); "calculator"
# (2026-12-01) names the potential, so that one file never mixes two, and "thermal_method"
# (2026-12-02) the thermal model ("agl" or "phonon-qha"; "" when the thermal stage was off),
# for the same reason. Results files written before them are upgraded in place on resume
# (`executor.completed_ids`).
# Label-table columns a surrogate can learn (`invdesign train surrogate --labels`), and the
# property each becomes. K and G are not among them: the training data has DFT values.
LABEL_PROPERTIES: dict[str, str] = {"alpha_300K": "thermal_expansion_oracle"}
_MAX_MESSAGE = 200  # characters of an exception message kept in a status

ThermalMethod = Literal["agl", "phonon-qha"]
THERMAL_METHODS: tuple[str, ...] = ("agl", "phonon-qha")


@dataclass(frozen=True, kw_only=True)
class OracleConfig:
    """Numerical settings of the oracle (recorded in every result's `method`).

    The defaults (strains of +-1 %, 7 volumes) replaced +-0.5 and +-1 % and 11 volumes on
    2026-12-01: on 38 crystals with SevenNet-l3i5 the median change was 0.02 % in K, 0.05 %
    in G and 0.2 % in alpha, for 1.5x less time (BENCHMARKS.md, issue 3).

    Attributes:
        fmax: Force tolerance of the cell + ion relaxation, eV/A.
        stress_tol: Stress tolerance of the cell relaxation, GPa.
        optimizer: ASE optimiser for the relaxation ("BFGS" or "FIRE").
        ionic_fmax: Force tolerance of ionic relaxations in strained/scaled cells, eV/A.
        strains: Strain magnitudes per Voigt component for the elastic tensor.
        symmetry: Strain only the Voigt components the point group does not determine.
        volume_range: Largest relative volume change of the E(V) curve.
        n_volumes: Volumes on the E(V) curve.
        gruneisen: Volume dependence of the Debye temperature, "poisson" or "slater"
            (see `invdesign.oracle.thermal`).
        default_poisson: Poisson ratio used when the elastic step gives none.
        min_distance: Pre-check: closest allowed interatomic distance, A.
        max_volume_per_atom: Pre-check: largest allowed volume per atom, A^3.
        neighbour_cutoff: Pre-check: every atom needs a neighbour within this distance, A.
        thermal: Run the thermal-expansion stage (False: relaxation and elastic moduli only,
            about half the time; alpha stays NaN and a stable structure is "ok").
        thermal_method: "agl" (Debye-Grueneisen on the E(V) curve, `oracle.thermal`) or
            "phonon-qha" (every phonon mode by finite displacements, `oracle.phonons`: needs
            phonopy, tens of times slower; catches negative-Grueneisen modes). With
            "phonon-qha" the Debye temperature is the elastic (Anderson) one, the Grueneisen
            parameter the thermodynamic one, and the EOS columns stay NaN.
        phonon_supercell: Smallest distance between opposite supercell faces for phonons, A.
        phonon_volume_range: Largest relative expansion of the phonon QHA's volume grid
            (compression: half of it).
    """

    fmax: float = 0.05
    stress_tol: float = 0.1
    optimizer: Optimizer = "BFGS"
    ionic_fmax: float = 0.01
    strains: tuple[float, ...] = DEFAULT_STRAINS
    symmetry: bool = True
    volume_range: float = 0.10
    n_volumes: int = DEFAULT_N_VOLUMES
    gruneisen: GruneisenModel = "poisson"
    default_poisson: float = 0.25
    min_distance: float = 0.5
    max_volume_per_atom: float = 250.0
    neighbour_cutoff: float = 5.0
    thermal: bool = True
    thermal_method: ThermalMethod = "agl"
    phonon_supercell: float = 8.0
    phonon_volume_range: float = 0.08

    def __post_init__(self) -> None:
        if self.thermal_method not in THERMAL_METHODS:
            raise ValueError(f"thermal_method must be one of {', '.join(THERMAL_METHODS)}, "
                             f"not {self.thermal_method!r}")
        if self.gruneisen not in ("poisson", "slater"):
            raise ValueError(f"gruneisen must be 'poisson' or 'slater', not {self.gruneisen!r}")
        if self.optimizer not in ("BFGS", "FIRE"):
            raise ValueError(f"optimizer must be 'BFGS' or 'FIRE', not {self.optimizer!r}")
        if self.n_volumes < 5 or not 0 < self.volume_range < 0.5 or not self.strains:
            raise ValueError("need n_volumes >= 5, 0 < volume_range < 0.5 and some strains")


@dataclass
class OracleResult:
    """Oracle verdict on one structure; NaN where a stage did not run.

    Attributes:
        id: Caller's identifier.
        formula: Reduced formula.
        n_atoms: Atoms in the cell.
        K_vrh: VRH bulk modulus, GPa.
        G_vrh: VRH shear modulus, GPa.
        E: Young's modulus 9KG/(3K+G), GPa.
        alpha_300K: Linear thermal expansion at `method["temperature"]` (300 K by default), 1/K.
        debye_temperature: AGL Debye temperature at the static volume, K.
        gruneisen: Grueneisen parameter, dimensionless.
        relax_rmsd: RMSD between input and relaxed positions on the relaxed lattice, A.
        energy_per_atom: Relaxed energy, eV/atom.
        mass_amu: Cell mass, atomic mass units.
        poisson: Poisson ratio of the elastic stage used by the thermal stage.
        eos_V0: Static equilibrium volume of the E(V) fit, A^3 per cell.
        eos_B0: Its bulk modulus, GPa.
        eos_B1: Its pressure derivative B', dimensionless.
        mechanically_stable: Born criterion (all elastic-tensor eigenvalues > 0); None when
            the elastic stage did not run.
        status: "ok" or "failed: <reason>".
        seconds: Wall time, s.
        method: Calculator name and every numerical parameter.
        details: Diagnostics: steps, volume change, elastic tensor (GPa), EOS fit, timings (s).
        relaxed_cif: The relaxed structure as CIF text ("" when the relaxation did not
            converge); not a CSV column (`run_many` can write it to a folder).
    """

    id: str = ""
    formula: str = ""
    n_atoms: int = 0
    K_vrh: float = math.nan
    G_vrh: float = math.nan
    E: float = math.nan
    alpha_300K: float = math.nan  # noqa: N815 - column name fixed by the CLI contract
    debye_temperature: float = math.nan
    gruneisen: float = math.nan
    relax_rmsd: float = math.nan
    energy_per_atom: float = math.nan
    mass_amu: float = math.nan
    poisson: float = math.nan
    eos_V0: float = math.nan  # noqa: N815 - physics symbols
    eos_B0: float = math.nan  # noqa: N815
    eos_B1: float = math.nan  # noqa: N815
    mechanically_stable: bool | None = None
    status: str = "failed: not run"
    seconds: float = 0.0
    method: dict[str, Any] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)
    relaxed_cif: str = ""

    @property
    def ok(self) -> bool:
        """True when every stage succeeded."""
        return self.status == "ok"

    @property
    def calculator(self) -> str:
        """The potential's name, from `method` ("" when unknown)."""
        return str(self.method.get("calculator", ""))

    @property
    def thermal_method(self) -> str:
        """"agl" or "phonon-qha" from `method` ("" when the thermal stage was off or unknown)."""
        if not self.method.get("thermal", True):
            return ""
        return str(self.method.get("thermal_method", ""))

    def to_row(self) -> dict[str, Any]:
        """The CSV row (`CSV_COLUMNS`)."""
        return {name: getattr(self, name) for name in CSV_COLUMNS}


def _precheck(structure: Structure, elements: Collection[str], cfg: OracleConfig) -> str | None:
    """Failure status for a structure the oracle must not attempt, else None."""
    if len(structure) == 0:
        return "failed: empty structure"
    if not structure.is_ordered:
        return "failed: disordered structure (partial occupancies)"
    lattice, frac = structure.lattice.matrix, structure.frac_coords
    if not (np.all(np.isfinite(lattice)) and np.all(np.isfinite(frac))):
        return "failed: invalid structure (non-finite lattice or coordinates)"
    if not structure.volume > 1e-6:
        return "failed: invalid structure (zero cell volume)"
    unknown = sorted({getattr(el, "symbol", str(el)) for el in
                      (getattr(sp, "element", sp) for sp in structure.species)
                      if not isinstance(el, Element) or el.symbol not in elements})
    if unknown:
        return f"failed: unsupported element: {', '.join(unknown)}"
    contact = closest_contact(structure, cfg.min_distance)
    if contact is not None:
        return f"failed: atoms overlap (distance {contact[2]:.2f} A < {cfg.min_distance} A)"
    vpa = structure.volume / len(structure)
    if vpa > cfg.max_volume_per_atom:
        return (f"failed: isolated atoms (volume per atom {vpa:.3g} A^3 > "
                f"{cfg.max_volume_per_atom} A^3)")
    centres = structure.get_neighbor_list(cfg.neighbour_cutoff)[0]
    if len(set(centres.tolist())) < len(structure):
        return f"failed: isolated atoms (no neighbour within {cfg.neighbour_cutoff} A)"
    return None


def _stages(structure: Structure, calc, out: dict[str, Any], temperature: float, steps: int,
            cfg: OracleConfig) -> str:
    """Run relax, elastic and thermal stages, filling `out`; returns the status."""
    out["mass_amu"] = float(structure.composition.weight)
    t = time.perf_counter()
    rel = relax(structure, calc, fmax=cfg.fmax, stress_tol=cfg.stress_tol, steps=steps,
                optimizer=cfg.optimizer)
    out.update(energy_per_atom=rel.energy_per_atom, relax_rmsd=rel.rmsd)
    det = out["details"]
    det.update(relax_steps=rel.steps, volume_change=float(rel.volume_change),
               t_relax=time.perf_counter() - t)
    if not rel.converged:
        return f"failed: no convergence (relaxation, {rel.steps} steps)"
    out["relaxed_cif"] = rel.structure.to(fmt="cif")
    if rel.atoms.get_volume() / len(rel.atoms) > cfg.max_volume_per_atom:
        return "failed: no convergence (relaxation diverged: cell expanded)"
    t = time.perf_counter()
    el = elastic_tensor(rel.atoms, calc, strains=cfg.strains, relax_ions_fmax=cfg.ionic_fmax,
                        relax_steps=steps, symmetry=cfg.symmetry)
    out.update(K_vrh=el.K_vrh, G_vrh=el.G_vrh, E=float(youngs_modulus(el.K_vrh, el.G_vrh)),
               mechanically_stable=el.mechanically_stable)
    det.update(elastic_tensor=np.round(el.tensor, 3).tolist(), elastic_steps=el.steps,
               elastic_components=list(el.components),
               elastic_symmetry_mismatch=el.symmetry_mismatch,
               elastic_residual=el.max_residual, t_elastic=time.perf_counter() - t)
    if not el.mechanically_stable:
        return f"failed: mechanically unstable (lowest eigenvalue {el.eigenvalues[0]:.3g} GPa)"
    if not cfg.thermal:
        return "ok"
    nu = float(poisson_ratio(el.K_vrh, el.G_vrh))
    nu = nu if math.isfinite(nu) else cfg.default_poisson
    if cfg.thermal_method == "phonon-qha":
        return _phonon_stage(rel.atoms, calc, out, el.K_vrh, nu, temperature, steps, cfg)
    t = time.perf_counter()
    th = thermal_expansion(rel.atoms, calc, poisson=nu, temperature=temperature,
                           volume_range=cfg.volume_range, n_volumes=cfg.n_volumes,
                           fmax=cfg.ionic_fmax, steps=steps, gruneisen=cfg.gruneisen)
    out.update(alpha_300K=th.alpha, debye_temperature=th.debye_temperature,
               gruneisen=th.gruneisen, poisson=nu, eos_V0=th.V0, eos_B0=th.B0, eos_B1=th.B1)
    det.update(eos_rms=th.eos_rms,
               thermal_steps=th.steps, t_thermal=time.perf_counter() - t)
    return "ok" if th.status == "ok" else f"failed: {th.status}"


def _phonon_stage(atoms: Atoms, calc, out: dict[str, Any], bulk_modulus: float, nu: float,
                  temperature: float, steps: int, cfg: OracleConfig) -> str:
    """The thermal stage by phonon QHA; fills `out` and returns the status. The Debye
    temperature is the elastic one (AGL's formula on the moduli, without an EOS fit)."""
    t = time.perf_counter()
    qha = phonon_thermal_expansion(atoms, calc, temperature=temperature,
                                   volume_range=cfg.phonon_volume_range,
                                   n_volumes=cfg.n_volumes, fmax=cfg.ionic_fmax, steps=steps,
                                   supercell_length=cfg.phonon_supercell)
    theta = agl_debye_temperature(bulk_modulus, atoms.get_volume(), len(atoms),
                                  out["mass_amu"], nu)
    out.update(alpha_300K=qha.alpha, gruneisen=qha.gruneisen, debye_temperature=float(theta),
               poisson=nu)
    out["details"].update(phonon_min_frequency=qha.min_frequency,
                          phonon_supercell=list(qha.supercell),
                          phonon_displacements=qha.n_displacements, thermal_steps=qha.steps,
                          t_thermal=time.perf_counter() - t)
    return "ok" if qha.status == "ok" else f"failed: {qha.status}"


def _describe(exc: Exception) -> str:
    """Failure status for an exception raised inside a stage."""
    message = " ".join(str(exc).split())[:_MAX_MESSAGE]
    if type(exc).__name__ == "EOSError":
        return f"failed: unphysical fit: EOS ({message})"
    if isinstance(exc, RelaxationRunawayError):
        return f"failed: no convergence ({message})"
    return f"failed: error: {type(exc).__name__}: {message}"


def run_oracle(structure: Structure | Atoms, *, structure_id: str = "",
               calculator: CalculatorName = DEFAULT_CALCULATOR, temperature: float = 300.0,
               steps: int = 200, config: OracleConfig | None = None) -> OracleResult:
    """Relax a structure and compute its elastic moduli and thermal expansion.

    Args:
        structure: Pymatgen Structure or ASE Atoms (not modified).
        structure_id: Identifier copied into the result.
        calculator: Potential name (see `get_calculator`).
        temperature: Temperature of alpha, K.
        steps: Maximum optimiser steps per relaxation.
        config: Numerical settings (defaults: `OracleConfig()`).

    Returns:
        An `OracleResult`; a bad structure gives status "failed: <reason>", never an exception.

    Raises:
        ValueError: Unknown calculator or non-positive temperature/steps (caller errors).
        ImportError: The calculator's package is not installed.
    """
    start = time.perf_counter()
    cfg = config or OracleConfig()
    if not temperature > 0 or steps < 1:
        raise ValueError(f"temperature ({temperature} K) and steps ({steps}) must be positive")
    calc = get_calculator(calculator)
    method = {"calculator": calculator, "temperature": temperature, "steps": steps,
              **dataclasses.asdict(cfg)}
    out: dict[str, Any] = {"details": {}}
    try:
        if isinstance(structure, Atoms):
            structure = to_structure(structure)
        out["n_atoms"] = len(structure)
        if len(structure):
            out["formula"] = structure.composition.reduced_formula
        status = (_precheck(structure, supported_elements(calculator), cfg)
                  or _stages(structure, calc, out, temperature, steps, cfg))
    except Exception as exc:  # a bad structure must never kill a batch
        logger.debug("oracle failed on %s", structure_id, exc_info=True)
        status = _describe(exc)
    logger.info("%s %s: %s", structure_id, out.get("formula", "?"), status)
    return OracleResult(id=structure_id, status=status, method=method,
                        seconds=time.perf_counter() - start, **out)
