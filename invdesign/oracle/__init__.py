"""Physics oracle: relaxation, elastic moduli and thermal expansion through an ASE potential.

`run_oracle` verifies one structure (never raising for a bad one), `run_many` runs a batch in a
local process pool or on Ray, streaming rows to a resumable CSV. Potentials are chosen by name
("sevenn-l3i5", the default, "chgnet", "sevenn", "sevenn-mf-0", "emt") and imported only when
first used. Thermal expansion comes from AGL's Debye-Grueneisen model by default or from phonon
QHA with phonopy (`OracleConfig(thermal_method="phonon-qha")`, slower). `Calibration` maps oracle
moduli to DFT-like values by a log-log linear fit learned on one split and applied to others.
"""

from __future__ import annotations

from invdesign.oracle.calculators import (
    DEFAULT_CALCULATOR,
    CalculatorName,
    get_calculator,
    supported_elements,
)
from invdesign.oracle.calibration import Calibration, LogLinearFit, agreement
from invdesign.oracle.elastic import ElasticResult, elastic_tensor, vrh_moduli
from invdesign.oracle.executor import completed_ids, read_results, run_many
from invdesign.oracle.oracle import (
    CSV_COLUMNS,
    LABEL_PROPERTIES,
    OracleConfig,
    OracleResult,
    run_oracle,
)
from invdesign.oracle.relax import RelaxResult, relax, relax_ions
from invdesign.oracle.thermal import (
    BirchMurnaghan,
    DebyeGruneisen,
    ThermalResult,
    agl_debye_temperature,
    debye_gruneisen,
    quasi_harmonic,
    thermal_expansion,
)

__all__ = [
    "CSV_COLUMNS",
    "DEFAULT_CALCULATOR",
    "LABEL_PROPERTIES",
    "BirchMurnaghan",
    "CalculatorName",
    "Calibration",
    "DebyeGruneisen",
    "ElasticResult",
    "LogLinearFit",
    "OracleConfig",
    "OracleResult",
    "RelaxResult",
    "ThermalResult",
    "agl_debye_temperature",
    "agreement",
    "completed_ids",
    "debye_gruneisen",
    "elastic_tensor",
    "get_calculator",
    "quasi_harmonic",
    "read_results",
    "relax",
    "relax_ions",
    "run_many",
    "run_oracle",
    "supported_elements",
    "thermal_expansion",
    "vrh_moduli",
]
