"""Registry of named material properties: units, aliases and learning transforms.

Every property the package knows has one canonical, case-sensitive name (``bulk_modulus_vrh``)
and optional short aliases (``K``). Datasets may carry other, unknown names; only code that needs
units or transforms asks the registry, and :func:`is_known` tells whether it can answer.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike

__all__ = [
    "PROPERTIES",
    "Property",
    "UnknownPropertyError",
    "canonical_name",
    "get_property",
    "inverse_transform",
    "is_known",
    "known_names",
    "transform",
]

TransformName = Literal["identity", "log10"]


@dataclass(frozen=True)
class Property:
    """A named scalar property of a material.

    Attributes:
        name: Canonical, case-sensitive name (e.g. ``"bulk_modulus_vrh"``).
        unit: Physical unit as plain text (``"GPa"``, ``"1/K"``, ``""`` for dimensionless).
        description: One line saying what the value is and where it comes from.
        transform: Transform applied before learning: ``"identity"`` or ``"log10"``.
        aliases: Other accepted names (e.g. ``("K", "bulk_modulus")``).
        derived: True when computed from other properties (see ``derived.py``).
    """

    name: str
    unit: str
    description: str
    transform: TransformName = "identity"
    aliases: tuple[str, ...] = ()
    derived: bool = False

    @property
    def all_names(self) -> tuple[str, ...]:
        """The canonical name followed by every alias."""
        return (self.name, *self.aliases)


class UnknownPropertyError(KeyError, ValueError):
    """Raised for a property name that is neither canonical nor an alias.

    Subclasses both ``KeyError`` (a failed lookup) and ``ValueError`` (bad user input).
    """

    def __str__(self) -> str:  # KeyError would otherwise quote the whole message
        return str(self.args[0]) if self.args else ""


_DEFINITIONS: tuple[Property, ...] = (
    # Elastic moduli: learned targets, log10 as in Matbench.
    Property("bulk_modulus_vrh", "GPa", "Voigt-Reuss-Hill bulk modulus",
             transform="log10", aliases=("K", "bulk_modulus", "K_vrh")),
    Property("shear_modulus_vrh", "GPa", "Voigt-Reuss-Hill shear modulus",
             transform="log10", aliases=("G", "shear_modulus", "G_vrh")),
    # Derived from K and G (and density, volume per atom): see derived.py.
    Property("youngs_modulus", "GPa", "Isotropic Young's modulus 9KG/(3K+G)",
             transform="log10", aliases=("E",), derived=True),
    Property("poisson_ratio", "", "Isotropic Poisson ratio (3K-2G)/(2(3K+G))",
             aliases=("nu",), derived=True),
    Property("pugh_ratio", "", "Pugh ratio K/G (ductile above about 1.75)",
             aliases=("pugh",), derived=True),
    Property("hardness_chen", "GPa", "Vickers hardness, Chen et al. 2011 model (clipped at 0)",
             aliases=("hardness", "H"), derived=True),
    Property("hardness_tian", "GPa", "Vickers hardness, Tian et al. 2012 model", derived=True),
    Property("fracture_toughness", "MPa m^0.5", "Fracture toughness K_IC, Niu-Oganov 2019 model",
             aliases=("toughness", "K_IC"), derived=True),
    Property("debye_temperature", "K", "Debye temperature from the mean sound velocity",
             aliases=("theta_D",), derived=True),
    Property("gruneisen", "", "Grueneisen parameter from the Poisson ratio (Belomestnykh/AGL)",
             aliases=("gamma",), derived=True),
    Property("heat_capacity_debye", "k_B/atom", "Debye-model heat capacity C_V per atom at T",
             aliases=("Cv_debye",), derived=True),
    Property("thermal_expansion", "1/K",
             "Linear thermal expansion coefficient, Debye-Grueneisen model (300 K by default)",
             aliases=("alpha", "alpha_300K"), derived=True),
    # Learned from an oracle label table (`invdesign label`), not derived from K and G; the
    # shipped surrogate learned the default potential's (SevenNet-l3i5) labels.
    Property("thermal_expansion_oracle", "1/K",
             "Linear thermal expansion at 300 K as the quasi-harmonic (AGL) oracle computes "
             "it; a surrogate target learned from oracle labels",
             transform="log10", aliases=("alpha_oracle",)),
    # Structural.
    Property("density", "g/cm^3", "Mass density", aliases=("rho",)),
    Property("volume_per_atom", "A^3", "Cell volume divided by the number of atoms",
             aliases=("V_atom",)),
    # Dataset targets (Perov-5, Carbon-24, Alexandria phonons).
    Property("heat_ref", "eV/atom", "Heat of formation vs. reference phases (Perov-5)"),
    Property("heat_all", "eV/atom", "Heat of formation vs. the elements (Perov-5)"),
    Property("dir_gap", "eV", "Direct band gap (Perov-5, GLLB-SC)"),
    Property("ind_gap", "eV", "Indirect band gap (Perov-5, GLLB-SC)"),
    Property("energy_per_atom", "eV/atom", "Total energy per atom (Carbon-24)"),
    Property("heat_capacity", "J/(mol K)",
             "Phonon heat capacity at 300 K per mole of the given cell (Alexandria/phonopy)"),
)  # fmt: skip


def _build() -> tuple[Mapping[str, Property], Mapping[str, str]]:
    props: dict[str, Property] = {}
    lookup: dict[str, str] = {}
    for prop in _DEFINITIONS:
        for name in prop.all_names:
            if name in lookup:  # programming error in the table above
                raise RuntimeError(f"property name {name!r} registered twice")
            lookup[name] = prop.name
        props[prop.name] = prop
    return MappingProxyType(props), MappingProxyType(lookup)


PROPERTIES, _LOOKUP = _build()
"""Read-only mapping canonical name -> :class:`Property`."""


def known_names() -> list[str]:
    """Sorted canonical names of all registered properties."""
    return sorted(PROPERTIES)


def is_known(name: str) -> bool:
    """True when ``name`` is a canonical property name or an alias."""
    return isinstance(name, str) and name in _LOOKUP


def _unknown_message(name: object) -> str:
    msg = f"unknown property {name!r}"
    close = difflib.get_close_matches(str(name), list(_LOOKUP), n=3, cutoff=0.6)
    if close:
        msg += f" (did you mean {', '.join(close)}?)"
    entries = [
        f"{p.name} ({', '.join(p.aliases)})" if p.aliases else p.name for p in PROPERTIES.values()
    ]
    return msg + "; known names (aliases): " + ", ".join(entries)


def canonical_name(name: str) -> str:
    """Resolve a canonical name or alias to the canonical name.

    Raises:
        UnknownPropertyError: ``name`` is not registered; the message lists known names.
    """
    try:
        return _LOOKUP[name]
    except (KeyError, TypeError):
        raise UnknownPropertyError(_unknown_message(name)) from None


def get_property(name: str) -> Property:
    """Return the :class:`Property` for a canonical name or alias.

    Raises:
        UnknownPropertyError: ``name`` is not registered; the message lists known names.
    """
    return PROPERTIES[canonical_name(name)]


def transform(name: str, values: ArrayLike) -> np.ndarray:
    """Map physical values of property ``name`` to the space models learn in.

    NaN (a missing label) passes through unchanged.

    Args:
        name: Canonical name or alias.
        values: Values in the property's physical unit.

    Returns:
        Float array of the same shape (log10 of the values for moduli).

    Raises:
        ValueError: A log10 property has a value <= 0 (the message names the property).
    """
    prop = get_property(name)
    arr = np.asarray(values, dtype=float)
    if prop.transform == "identity":
        return arr.copy()
    bad = arr <= 0  # NaN compares False, so missing labels stay NaN
    if np.any(bad):
        first = arr[bad].flat[0]
        raise ValueError(
            f"cannot log10-transform {prop.name}: {int(np.count_nonzero(bad))} value(s) <= 0 "
            f"(first: {first!r} {prop.unit})"
        )
    return np.log10(arr)


def inverse_transform(name: str, values: ArrayLike) -> np.ndarray:
    """Map model-space values of property ``name`` back to physical units.

    Args:
        name: Canonical name or alias.
        values: Transformed values (e.g. log10(GPa) for moduli).

    Returns:
        Float array of the same shape in the property's physical unit.
    """
    prop = get_property(name)
    arr = np.asarray(values, dtype=float)
    if prop.transform == "identity":
        return arr.copy()
    return np.power(10.0, arr)
