"""Decoder targets for the crystal VAE: a canonical, permutation-free description of a crystal.

A frame is the Niggli-reduced cell (so equivalent lattices give the same six parameters), the
species and the fractional coordinates. Atom order and origin stay free: the VAE's loss matches
decoded atoms to these atoms (Hungarian assignment) with the origin on one of the `anchors`, the
atoms of the rarest species, so any choice of origin among them is equally correct.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache

import numpy as np
from pymatgen.core import Composition, Element, Lattice, Structure

from invdesign.featurize.composition import atomic_numbers


@dataclass(frozen=True)
class CrystalFrame:
    """One crystal as the decoder sees it.

    Attributes:
        lattice: (6,) float32, a, b, c (A) and alpha, beta, gamma (degrees), Niggli-reduced.
        atomic_numbers: (n,) int64.
        frac_coords: (n, 3) float32 in [0, 1).
        anchors: indices of the atoms that may sit at the origin (those of the rarest species).

    Atoms are in slot order (`slot_order`), so species form contiguous blocks and the anchors
    are the first block.
    """

    lattice: np.ndarray
    atomic_numbers: np.ndarray
    frac_coords: np.ndarray
    anchors: np.ndarray

    @property
    def n_atoms(self) -> int:
        return len(self.atomic_numbers)

    @property
    def n_species(self) -> int:
        """Number of distinct elements."""
        return len(np.unique(self.atomic_numbers))


def slot_order(z: Sequence[int] | np.ndarray) -> np.ndarray:
    """Permutation putting atoms in decoder slot order: species by ascending count, ties
    heaviest first (stable within a species). The first species is the anchor species."""
    z = np.asarray(z, dtype=np.int64)
    species, inverse, counts = np.unique(z, return_inverse=True, return_counts=True)
    rank = np.empty(len(species), dtype=np.int64)
    rank[np.lexsort((-species, counts))] = np.arange(len(species))
    return np.argsort(rank[inverse], kind="stable")


def slot_species(counts: dict[int, int]) -> np.ndarray:
    """Atomic numbers of the decoder slots for a composition {Z: count}."""
    z = np.repeat(np.array(list(counts), dtype=np.int64), list(counts.values()))
    return z[slot_order(z)]


def crystal_frame(structure: Structure) -> CrystalFrame:
    """Frame of a structure (Niggli-reduced cell, coordinates wrapped into [0, 1))."""
    reduced = structure.get_reduced_structure("niggli")
    lat = reduced.lattice
    z = atomic_numbers(reduced)
    order = slot_order(z)
    z, frac = z[order], np.mod(reduced.frac_coords[order], 1.0)
    return CrystalFrame(
        lattice=np.array([*lat.abc, *lat.angles], dtype=np.float32),
        atomic_numbers=z.astype(np.int64),
        frac_coords=frac.astype(np.float32),
        anchors=np.flatnonzero(z == z[0]),
    )


def crystal_frames(structures: Sequence[Structure]) -> list[CrystalFrame]:
    return [crystal_frame(s) for s in structures]


def lattice_matrices(parameters: np.ndarray | Sequence[Sequence[float]]
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Lattice rows (B, 3, 3) from (B, 6) parameters (a, b, c in A; alpha, beta, gamma in
    degrees), computed as `Lattice.from_parameters` computes them (same bits), and which rows
    are usable: lengths > 0, angles in (0, 180) and a finite volume above 1e-6 A^3."""
    p = np.asarray(parameters, dtype=np.float64).reshape(-1, 6)
    a, b, c = p[:, 0], p[:, 1], p[:, 2]
    with np.errstate(all="ignore"):
        radians = np.radians(p[:, 3:])
        cos, sin = np.cos(radians), np.sin(radians)
        gamma_star = np.arccos(np.clip((cos[:, 0] * cos[:, 1] - cos[:, 2])
                                       / (sin[:, 0] * sin[:, 1]), -1, 1))
        matrices = np.zeros((len(p), 3, 3))
        matrices[:, 0, 0], matrices[:, 0, 2] = a * sin[:, 1], a * cos[:, 1]
        matrices[:, 1, 0] = -b * sin[:, 0] * np.cos(gamma_star)
        matrices[:, 1, 1] = b * sin[:, 0] * np.sin(gamma_star)
        matrices[:, 1, 2] = b * cos[:, 0]
        matrices[:, 2, 2] = c
        volume = np.abs(np.linalg.det(matrices))
    usable = ((p[:, :3] > 0).all(1) & ((p[:, 3:] > 0) & (p[:, 3:] < 180)).all(1)
              & np.isfinite(volume) & (volume > 1e-6))
    return matrices, usable


def lattice_from_parameters(parameters: Sequence[float]) -> Lattice:
    """Lattice from (a, b, c, alpha, beta, gamma); raises ValueError when it is unusable
    (see `lattice_matrices`)."""
    matrices, usable = lattice_matrices([parameters])
    if not usable[0]:
        raise ValueError(f"lattice parameters out of range or without volume: {parameters}")
    return Lattice(matrices[0])


def scaled_matrices(matrices: np.ndarray, volumes: np.ndarray) -> np.ndarray:
    """Lattice rows (B, 3, 3) scaled isotropically to `volumes` (B,), operation for operation
    as `Lattice.scale` scales one lattice (same bits)."""
    lengths = np.sqrt(np.sum(matrices ** 2, axis=2))  # (B, 3)
    columns = matrices / lengths[:, None, :]  # Lattice.scale divides columns by the lengths
    geo_factor = np.abs(np.sum(np.cross(columns[:, 0], columns[:, 1]) * columns[:, 2], axis=1))
    ratios = lengths / lengths[:, 2:]
    base = np.asarray(volumes, dtype=np.float64) / (geo_factor * np.prod(ratios, axis=1))
    new_c = np.array([math.pow(x, 1 / 3.0) for x in base.tolist()])  # libm pow, as a scalar
    return columns * (new_c[:, None] * ratios)[:, None, :]


@dataclass(frozen=True)
class DecodedCell:
    """A decoded crystal as arrays, before it becomes a pymatgen `Structure`: rescaling and
    denoising work on these, so each sample is built into a `Structure` once.

    Attributes:
        lattice: The cell.
        numbers: (n,) int64 atomic numbers.
        frac_coords: (n, 3) float64 fractional coordinates in [0, 1).
    """

    lattice: Lattice
    numbers: np.ndarray
    frac_coords: np.ndarray

    def __len__(self) -> int:
        return len(self.numbers)

    @property
    def composition(self) -> Composition:
        """As ``Structure.composition`` gives it (elements in order of first appearance)."""
        return Composition({Element.from_Z(int(z)): float(n)
                            for z, n in Counter(self.numbers.tolist()).items()})

    def to_structure(self) -> Structure:
        return structure_from_arrays(self.lattice, self.numbers, self.frac_coords)


@cache
def _site_species(z: int) -> Composition:
    """The species of a site of element z, shared by every such site: pymatgen would build a
    new (immutable) Composition per site, most of the cost of a small Structure."""
    return Composition({Element.from_Z(z): 1})


def structure_from_arrays(lattice: Lattice, numbers: np.ndarray, frac_coords: np.ndarray
                          ) -> Structure:
    """`Structure(lattice, numbers, frac_coords)`, built about twice as fast."""
    return Structure(lattice, [_site_species(z) for z in numbers.tolist()], frac_coords)


def decoded_cell(lattice: Lattice | Sequence[float], z: Sequence[int],
                 frac_coords: np.ndarray) -> DecodedCell:
    """Cell from a lattice (or decoded lattice parameters), atomic numbers and fractional
    coordinates (wrapped into [0, 1)); raises ValueError for parameters without volume."""
    if not isinstance(lattice, Lattice):
        lattice = lattice_from_parameters(lattice)
    return DecodedCell(lattice, np.asarray(z, dtype=np.int64),
                       np.mod(np.asarray(frac_coords, dtype=np.float64), 1.0))


def padded_positions(structures: Sequence[Structure | DecodedCell]
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Lattice rows (B, 3, 3), Cartesian positions inside the cell (B, M, 3) and atomic
    numbers (B, M, 0 in padding) of B structures (or decoded cells) of up to M atoms."""
    m = max(len(s) for s in structures)
    lattice = np.stack([s.lattice.matrix for s in structures])
    cart = np.zeros((len(structures), m, 3))
    numbers = np.zeros((len(structures), m), dtype=np.int64)
    for i, s in enumerate(structures):
        cart[i, :len(s)] = np.mod(s.frac_coords, 1.0) @ s.lattice.matrix
        numbers[i, :len(s)] = s.numbers if isinstance(s, DecodedCell) else atomic_numbers(s)
    return lattice, cart, numbers


def structures_from_padded(lattice: np.ndarray, frac_coords: np.ndarray, numbers: np.ndarray
                           ) -> list[Structure]:
    """Inverse of `padded_positions` (from fractional coordinates), padding dropped."""
    out = []
    for cell, frac, z in zip(lattice, frac_coords, numbers, strict=True):
        keep = z > 0
        out.append(structure_from_arrays(Lattice(np.asarray(cell, dtype=np.float64)), z[keep],
                                         frac[keep]))
    return out
