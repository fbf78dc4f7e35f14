"""Structural validity: interatomic distances (periodic images included) and volume per atom.

Two criteria are computed in one call:

* ours (``valid``): every distance between two atoms, including an atom and its own periodic
  images, is >= ``min_distance`` (0.5 A), and the volume per atom lies in
  [``min_volume_per_atom``, ``max_volume_per_atom``] = [1, 200] A^3. The range is wide on
  purpose: the densest solids (diamond 5.7, Be 8, high-pressure hydrides ~2 A^3/atom) and the
  loosest ordered crystals (Cs 117, solid Xe 60 A^3/atom) sit inside it, while a decoded cell
  blown up to 1000 A or collapsed to a sliver does not. This is the filter for candidates.
* CDVAE's (``cdvae_valid``, ``scripts/eval_utils.py::structure_validity`` and the volume check in
  ``scripts/compute_metrics.py::Crystal.get_structure``): the minimum-image distance between any
  two *distinct* sites >= 0.5 A and the cell volume >= 0.1 A^3. It ignores an atom's own periodic
  images (a 0.4 A cell with one atom passes) and has no upper volume bound. Reported so that
  our numbers compare with the literature.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from pymatgen.core import Structure

from invdesign.data.validate import closest_contact
from invdesign.validity.result import StructureValidity

MIN_DISTANCE = 0.5  # A, CDVAE's cutoff
MIN_VOLUME_PER_ATOM = 1.0  # A^3
MAX_VOLUME_PER_ATOM = 200.0  # A^3
CDVAE_MIN_VOLUME = 0.1  # A^3, whole cell
_MAX_IMAGE_CELLS = 5_000_000  # periodic images x atoms the neighbour search may visit


def cdvae_structure_valid(structure: Structure) -> bool:
    """CDVAE's structural validity: distinct sites >= 0.5 A apart, cell volume >= 0.1 A^3."""
    matrix = structure.lattice.matrix
    if len(structure) == 0 or not np.isfinite(matrix).all():
        return False
    if not np.isfinite(structure.frac_coords).all():
        return False
    if abs(np.linalg.det(matrix)) < CDVAE_MIN_VOLUME:
        return False
    if len(structure) == 1:
        return True
    dist = structure.distance_matrix
    np.fill_diagonal(dist, np.inf)
    return bool(dist.min() >= MIN_DISTANCE)


def _image_cells(matrix: np.ndarray, cutoff: float) -> float:
    """Number of cells a neighbour search within `cutoff` scans (from the interplanar spacings)."""
    inverse = np.linalg.inv(matrix)
    spacings = 1.0 / np.sqrt((inverse**2).sum(axis=0))
    return float(np.prod(2 * np.ceil(cutoff / spacings) + 1))


def _contact_reason(contact: tuple[int, int, float], cutoff: float) -> str:
    i, j, d = contact
    if i == j:
        return f"atom {i} is {d:.3g} A from its own periodic image (< {cutoff} A)"
    return f"atoms {i} and {j} are {d:.3g} A apart (< {cutoff} A)"


def structure_validity(
    structure: Structure,
    *,
    min_distance: float = MIN_DISTANCE,
    min_volume_per_atom: float = MIN_VOLUME_PER_ATOM,
    max_volume_per_atom: float = MAX_VOLUME_PER_ATOM,
) -> StructureValidity:
    """Structural validity of one periodic structure (see the module docstring).

    Args:
        structure: The structure to check.
        min_distance: Smallest allowed interatomic distance in A, periodic images included.
        min_volume_per_atom: Smallest allowed cell volume per atom in A^3.
        max_volume_per_atom: Largest allowed cell volume per atom in A^3.

    Returns:
        ``valid`` (our criterion) with the reason it failed, and ``cdvae_valid``.
    """
    n = len(structure)
    if n == 0:
        return StructureValidity(False, "empty structure", cdvae_valid=False)
    matrix = structure.lattice.matrix
    if not (np.isfinite(matrix).all() and np.isfinite(structure.frac_coords).all()):
        return StructureValidity(False, "non-finite lattice or coordinates", cdvae_valid=False)
    cdvae = cdvae_structure_valid(structure)
    volume = abs(float(np.linalg.det(matrix)))
    reasons = []
    per_atom = volume / n
    if not min_volume_per_atom <= per_atom <= max_volume_per_atom:
        reasons.append(f"volume per atom {per_atom:.4g} A^3 outside "
                       f"[{min_volume_per_atom:g}, {max_volume_per_atom:g}] A^3")
    cells = _image_cells(matrix, min_distance) if volume > 1e-12 else math.inf
    if not math.isfinite(cells) or cells * n > _MAX_IMAGE_CELLS:
        reasons.append(f"degenerate lattice (interplanar spacing far below {min_distance} A)")
    else:
        contact = closest_contact(structure, min_distance)
        if contact is not None:
            reasons.append(_contact_reason(contact, min_distance))
    return StructureValidity(not reasons, "; ".join(reasons), cdvae_valid=cdvae)


MIN_BOND_RATIO = 0.7  # 3,352 of 3,353 MP binaries lie above (CsIr, mp-985281: 0.61)
TYPICAL_BOND_RATIO = 0.976  # median `min_bond_ratio` of the 3,353 MP binaries
_BOND_CUTOFF = 4.0  # A; a closer pair decides the ratio for every element pair


def _radii() -> np.ndarray:
    from pymatgen.core import Element

    out = np.full(119, 1.5)
    for z in range(1, 119):
        radius = Element.from_Z(z).atomic_radius
        if radius is not None:
            out[z] = float(radius)
    return out


_RADII: np.ndarray | None = None


def min_bond_ratio(structure: Structure) -> float:
    """Smallest d_ij / (r_i + r_j) over atom pairs (periodic images included), with r the
    empirical atomic radius; inf when no pair is within 4 A.

    Known crystals sit above 0.8 (1st percentile of the MP binaries); a decoded cell squeezed
    far below that is unphysical even when every distance passes the 0.5 A rule, and would
    send a surrogate far outside the data it learned from. The design tools require
    `MIN_BOND_RATIO`.
    """
    global _RADII
    if _RADII is None:
        _RADII = _radii()
    center, neighbor, _, dist = structure.get_neighbor_list(_BOND_CUTOFF)
    keep = dist > 1e-8
    if not keep.any():
        return math.inf
    z = np.array(structure.atomic_numbers)
    ratio = dist[keep] / (_RADII[z[center[keep]]] + _RADII[z[neighbor[keep]]])
    return float(ratio.min())


def expand_to_bond_ratio(structure: Structure, ratio: float = TYPICAL_BOND_RATIO, *,
                         current: float | None = None) -> Structure:
    """A copy scaled up isotropically (fractional coordinates kept) until its tightest pair
    sits at `ratio` of its summed atomic radii; the structure itself when it already does.

    A decoded cell squeezed below what known crystals show is more likely a poorly decoded
    volume than a dense new phase, and a surrogate trained on relaxed crystals reads the
    squeeze as stiffness. `current`: its `min_bond_ratio`, when already computed.
    """
    current = min_bond_ratio(structure) if current is None else current
    if not math.isfinite(current) or current >= ratio:
        return structure
    if current <= 0:
        raise ValueError("overlapping atoms: no scaling separates them")
    scaled = structure.copy()
    scaled.scale_lattice(structure.volume * (ratio / current) ** 3)
    return scaled


PARALLEL_MIN_ITEMS = 2000  # batch size from which worker processes pay for themselves


def min_bond_ratios(structures: Sequence[Structure], *, n_jobs: int = 1) -> np.ndarray:
    """`min_bond_ratio` of each structure; `n_jobs` processes for batches of at least
    `PARALLEL_MIN_ITEMS`."""
    if n_jobs > 1 and len(structures) >= PARALLEL_MIN_ITEMS:
        from invdesign.parallel import map_chunks

        return np.array(map_chunks(_bond_ratio_chunk, structures, n_jobs), dtype=float)
    return np.array(_bond_ratio_chunk(list(structures)), dtype=float)


def _bond_ratio_chunk(structures: list[Structure]) -> list[float]:
    return [min_bond_ratio(s) for s in structures]
