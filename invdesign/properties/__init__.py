"""Property names, units and transforms; derived-property formulas; objective expressions.

Pure numpy: this package imports nothing else from ``invdesign`` and no torch or pymatgen, so
every other layer may depend on it.
"""

from __future__ import annotations

from .derived import (
    debye_heat_capacity,
    debye_temperature,
    derive_all,
    fracture_toughness,
    gruneisen_from_poisson,
    hardness_chen,
    hardness_tian,
    poisson_ratio,
    pugh_ratio,
    thermal_expansion,
    youngs_modulus,
)
from .objective import Constraint, Objective, parse_constraints
from .registry import (
    PROPERTIES,
    Property,
    UnknownPropertyError,
    canonical_name,
    get_property,
    inverse_transform,
    is_known,
    known_names,
    transform,
)

__all__ = [
    "PROPERTIES",
    "Constraint",
    "Objective",
    "Property",
    "UnknownPropertyError",
    "canonical_name",
    "debye_heat_capacity",
    "debye_temperature",
    "derive_all",
    "fracture_toughness",
    "get_property",
    "gruneisen_from_poisson",
    "hardness_chen",
    "hardness_tian",
    "inverse_transform",
    "is_known",
    "known_names",
    "parse_constraints",
    "poisson_ratio",
    "pugh_ratio",
    "thermal_expansion",
    "transform",
    "youngs_modulus",
]
