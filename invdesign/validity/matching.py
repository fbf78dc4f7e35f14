"""`StructureMatcher.fit` for reduced, ordered cells, batched with numpy.

For the settings uniqueness and novelty use (cells already Niggli-reduced and primitive,
volumes scaled, no supercells, `SpeciesComparator`), pymatgen's
``fit(a, b, skip_structure_reduction=True)`` is True exactly when, for some mapping of ``a``'s
lattice onto ``b``'s cell (lengths within ``ltol``, angles within ``angle_tol``, same volume)
and some translation that puts ``b``'s anchor site on a site of ``a`` of the same species,
every site passes the fractional-tolerance test and the least-squares site assignment
(periodic shortest vectors in the averaged cell, mean shift removed) moves no site by
``stol`` or more, in units of (volume / site)^(1/3).

pymatgen walks through the mappings and translations one by one, with several Python calls
for each (3-6 ms per pair of generated cells). `fit_reduced` takes the same steps with the
same tolerances, batched: lattice mappings from lattice points cached per cell, the averaged
cells and the fractional-tolerance test for all mappings and translations at once, then
pymatgen's own shortest-vector routine and one assignment for each translation that passes.
Only the order of floating-point sums differs, so the answers can differ only for a pair
within ~1e-15 of a tolerance. ``scripts/validate_matcher.py`` compares the two on generated
batches, ``tests/test_matching.py`` on prototype crystals swept across each tolerance.
"""

from __future__ import annotations

import numpy as np
from pymatgen.core import Lattice, Structure
from pymatgen.util.coord_cython import pbc_shortest_vectors
from scipy.optimize import linear_sum_assignment

_CHUNK = 2_000_000  # (mapping, translation, site, site, axis) elements per batch


class MatchCell:
    """What `fit_reduced` needs from one reduced cell, computed once per cell.

    Args:
        structure: A reduced (Niggli, primitive) cell, as ``StructureMatcher`` compares it.
    """

    def __init__(self, structure: Structure) -> None:
        self.matrix = np.array(structure.lattice.matrix)
        self.volume = structure.volume
        self.frac_coords = np.array(structure.frac_coords)
        self.cart_coords = self.frac_coords @ self.matrix
        self.parameters = _parameters(self.matrix[None])[0]  # a, b, c, alpha, beta, gamma
        self.ordered = structure.is_ordered
        # an ordered site's species (Element or Species: cheap to compare, unlike the
        # Composition `site.species`) -> index, in order of first appearance
        kinds: dict = {}
        self.site_kinds = np.array([kinds.setdefault(site.specie if self.ordered
                                                     else site.species, len(kinds))
                                    for site in structure])
        self.kinds = list(kinds)
        self._points = np.zeros((0, 3))
        self._radius = 0.0

    def __len__(self) -> int:
        return len(self.frac_coords)

    def lattice_points(self, radius: float) -> np.ndarray:
        """Integer lattice vectors (fractional, as floats) no longer than `radius` (A, this
        cell's own scale), and possibly some longer ones; cached with 20 % to spare."""
        if radius > self._radius:
            self._radius = radius * 1.2
            frac, _, _, _ = Lattice(self.matrix).get_points_in_sphere(
                [[0, 0, 0]], [0, 0, 0], self._radius, zip_results=False)
            self._points = np.round(np.asarray(frac, dtype=float).reshape(-1, 3))
        return self._points


def fit_reduced(first: MatchCell, second: MatchCell, *, ltol: float, stol: float,
                angle_tol: float) -> bool:
    """Whether ``StructureMatcher(ltol, stol, angle_tol, scale=True,
    attempt_supercell=False).fit(first, second, skip_structure_reduction=True)`` holds.

    Both cells must be ordered and have the same number of sites (uniqueness's prefilter
    guarantees it); other pairs raise ValueError rather than risk a different answer.
    """
    if not (first.ordered and second.ordered) or len(first) != len(second):
        raise ValueError("fit_reduced needs two ordered cells with the same number of sites")
    if first.kinds == second.kinds:
        kinds2 = second.site_kinds
    else:
        translate = np.array([first.kinds.index(k) if k in first.kinds else -1
                              for k in second.kinds])
        kinds2 = translate[second.site_kinds]
    if not np.array_equal(np.sort(first.site_kinds), np.sort(kinds2)):
        return False  # different species counts: no assignment respects the species
    n = len(first)
    allowed = kinds2[:, None] == first.site_kinds[None, :]  # (site of second, site of first)

    ratio = (second.volume / first.volume) ** (1 / 6)  # both cells scaled to one volume
    target_parameters = np.r_[second.parameters[:3] / ratio, second.parameters[3:]]
    bases = _lattice_mappings(first, ratio, target_parameters, ltol, angle_tol)
    if len(bases) == 0:
        return False
    frac1 = (first.cart_coords * ratio) @ np.linalg.inv(bases)
    frac1 -= np.floor(frac1)  # (mapping, site, 3): first's sites in each mapped basis
    frac2 = second.frac_coords
    average = _cells_from_parameters((_parameters(bases) + target_parameters) / 2)
    normalization = (n / np.abs(np.linalg.det(average))) ** (1 / 3)
    frac_tol = _reciprocal_lengths(average) * stol / (np.pi * normalization[:, None])

    # the anchor: the first site of `second` with the fewest same-species sites in `first`;
    # each translation puts it on one of those sites
    anchor = int(np.argmin(allowed.sum(axis=1)))
    targets = np.nonzero(allowed[anchor])[0]
    for chunk in _chunks(len(bases), most=max(1, _CHUNK // (len(targets) * n * n * 3))):
        f1 = frac1[chunk]
        moved = frac2[None, None] + (f1[:, targets] - frac2[anchor])[:, :, None, :]
        delta = moved[:, :, :, None, :] - f1[:, None, None, :, :]
        tol = frac_tol[chunk][:, None, None, None, :]
        close = np.all(np.abs(delta - np.round(delta)) <= tol, axis=-1) & allowed
        passing = close.any(axis=3).all(axis=2)  # (mapping, translation)
        if passing.any() and _assignment_fits(average[chunk], moved, f1, passing, ~allowed,
                                              normalization[chunk], stol):
            return True
    return False


def _chunks(total: int, most: int, first: int = 4) -> list[slice]:
    """Slices covering range(total), doubling from `first` up to `most` long: a match is
    usually found among the first mappings, a non-match needs them all."""
    chunks, start, size = [], 0, first
    while start < total:
        chunks.append(slice(start, start + min(size, most)))
        start += min(size, most)
        size *= 2
    return chunks


def _assignment_fits(average: np.ndarray, moved: np.ndarray, frac1: np.ndarray,
                     passing: np.ndarray, mask: np.ndarray, normalization: np.ndarray,
                     stol: float) -> bool:
    """``StructureMatcher._cart_dists`` for the passing (mapping, translation) pairs: whether
    for one of them the least-squares assignment of `moved` (mapping, translation, site, 3)
    onto `frac1` (mapping, site, 3), in the averaged cell, moves no site by `stol` or more
    once the mean shift is removed.

    The LLL cells and their tolerances are computed for all mappings at once, and the
    shortest vectors for all translations of a mapping in one call (each pair of sites is
    computed on its own, so stacking the translations changes no pair's answer)."""
    mappings = np.nonzero(passing.any(axis=1))[0]
    lll_matrices, lll_mappings = _lll_many(average[mappings])
    lll_frac_tols = (_reciprocal_lengths(lll_matrices) * stol
                     / (np.pi * normalization[mappings, None]))
    n = frac1.shape[1]
    rows = np.arange(n)
    mask = mask.astype(np.int64)
    for m, lll_matrix, lll_mapping, lll_frac_tol in zip(mappings, lll_matrices, lll_mappings,
                                                        lll_frac_tols, strict=True):
        coords, lll1 = moved[m][passing[m]], frac1[m]
        if lll_mapping is not None:
            lll_inverse = np.linalg.inv(lll_mapping)
            coords, lll1 = coords @ lll_inverse, lll1 @ lll_inverse
        count = len(coords)
        vectors, d2 = pbc_shortest_vectors(_LLLCell(lll_matrix), coords.reshape(-1, 3), lll1,
                                           np.tile(mask, (count, 1)), True, lll_frac_tol)
        vectors, d2 = vectors.reshape(count, n, n, 3), d2.reshape(count, n, n)
        short = np.array([vectors[t, rows, linear_sum_assignment(d2[t])[1]]
                          for t in range(count)])
        spread = np.sqrt(np.sum((short - short.mean(axis=1, keepdims=True)) ** 2, axis=-1))
        if np.any(spread.max(axis=1) * normalization[m] < stol):
            return True
    return False


def _lll_many(matrices: np.ndarray, delta: float = 0.75
              ) -> tuple[np.ndarray, list[np.ndarray | None]]:
    """pymatgen's LLL reduction (matrix, mapping) of each cell in a (k, 3, 3) stack; (the cell
    itself, None) where it is already reduced with a margin, so that pymatgen's loop would
    change nothing (tested for all cells at once; pymatgen reduces the others)."""
    a, b, c = matrices[:, 0], matrices[:, 1], matrices[:, 2]
    m0 = np.einsum("ij,ij->i", a, a)
    u10 = np.einsum("ij,ij->i", b, a) / m0
    b1 = b - u10[:, None] * a
    m1 = np.einsum("ij,ij->i", b1, b1)
    u20, u21 = np.einsum("ij,ij->i", c, a) / m0, np.einsum("ij,ij->i", c, b1) / m1
    b2 = c - u20[:, None] * a - u21[:, None] * b1
    margin = 1e-9
    reduced = ((np.maximum(np.maximum(np.abs(u10), np.abs(u20)), np.abs(u21)) < 0.5 - margin)
               & (m1 > (delta - u10 ** 2) * m0 * (1 + margin))
               & (np.einsum("ij,ij->i", b2, b2) > (delta - u21 ** 2) * m1 * (1 + margin)))
    lll_matrices = matrices.copy()
    mappings: list[np.ndarray | None] = [None] * len(matrices)
    for i in np.nonzero(~reduced)[0]:
        lattice = Lattice(matrices[i])
        lll_matrices[i], mappings[i] = lattice.lll_matrix, lattice.lll_mapping
    return lll_matrices, mappings


class _LLLCell:
    """The lattice interface ``pbc_shortest_vectors`` reads, for coordinates that are
    already in the LLL basis (pymatgen's Lattice would convert them again on every call)."""

    pbc = (True, True, True)

    def __init__(self, lll_matrix: np.ndarray) -> None:
        self.lll_matrix = lll_matrix

    @staticmethod
    def get_lll_frac_coords(frac_coords: np.ndarray) -> np.ndarray:
        return frac_coords


def _parameters(matrices: np.ndarray) -> np.ndarray:
    """(a, b, c, alpha, beta, gamma) of each cell in a (k, 3, 3) stack, degrees."""
    lengths = np.linalg.norm(matrices, axis=-1)
    angles = []
    for d in range(3):
        j, k = (d + 1) % 3, (d + 2) % 3
        cosine = np.sum(matrices[:, j] * matrices[:, k], axis=-1) / (lengths[:, j]
                                                                     * lengths[:, k])
        angles.append(np.degrees(np.arccos(np.clip(cosine, -1, 1))))
    return np.column_stack([lengths, *angles])


def _cells_from_parameters(parameters: np.ndarray) -> np.ndarray:
    """``Lattice.from_parameters(...).matrix`` (its convention) for each row of a (k, 6)."""
    a, b, c = parameters[:, 0], parameters[:, 1], parameters[:, 2]
    cos_a, cos_b, cos_g = np.cos(np.radians(parameters[:, 3:])).T
    sin_a, sin_b, _ = np.sin(np.radians(parameters[:, 3:])).T
    gamma_star = np.arccos(np.clip((cos_a * cos_b - cos_g) / (sin_a * sin_b), -1, 1))
    zero = np.zeros_like(a)
    return np.stack([np.stack([a * sin_b, zero, a * cos_b], axis=-1),
                     np.stack([-b * sin_a * np.cos(gamma_star), b * sin_a * np.sin(gamma_star),
                               b * cos_a], axis=-1),
                     np.stack([zero, zero, c], axis=-1)], axis=1)


def _reciprocal_lengths(matrices: np.ndarray) -> np.ndarray:
    """Lengths of the reciprocal vectors (2 pi convention, pymatgen's) of a (k, 3, 3) stack."""
    return 2 * np.pi * np.linalg.norm(np.linalg.inv(matrices), axis=-2)


def _angle_within(first: np.ndarray, second: np.ndarray, angle: float, tol: float
                  ) -> np.ndarray:
    """Whether the angle between each unit row of `first` and each of `second` lies within
    `tol` degrees of `angle` (compared as cosines: cos falls monotonically on [0, 180])."""
    cosine = np.clip(first @ second.T, -1, 1)
    low, high = np.radians([min(angle + tol, 180.0), max(angle - tol, 0.0)])
    return (cosine >= np.cos(low)) & (cosine <= np.cos(high))


def _lattice_mappings(cell: MatchCell, ratio: float, target_parameters: np.ndarray,
                      ltol: float, angle_tol: float) -> np.ndarray:
    """Bases (k, 3, 3) of `cell`'s lattice, scaled by `ratio`, whose lengths lie within a
    factor 1 + ltol of the target cell's, whose angles lie within `angle_tol` degrees of its
    angles, and which span one cell (``Lattice.find_all_mappings`` + ``_get_lattices``)."""
    lengths, (alpha, beta, gamma) = target_parameters[:3], target_parameters[3:]
    points = cell.lattice_points(lengths.max() * (1 + ltol) / ratio)
    cart = points @ (cell.matrix * ratio)
    dist = np.linalg.norm(cart, axis=1)
    picks = [np.nonzero((dist / length < 1 + ltol) & (dist / length > 1 / (1 + ltol)))[0]
             for length in lengths]
    if any(len(p) == 0 for p in picks):
        return np.zeros((0, 3, 3))
    ua, ub, uc = (cart[p] / dist[p, None] for p in picks)
    ok_gamma = _angle_within(ua, ub, gamma, angle_tol)
    if not ok_gamma.any():
        return np.zeros((0, 3, 3))
    ok_alpha = _angle_within(ub, uc, alpha, angle_tol)
    ok_beta = _angle_within(ua, uc, beta, angle_tol)
    i, j, k = np.nonzero(ok_gamma[:, :, None] & ok_alpha[None, :, :] & ok_beta[:, None, :])
    rows = np.stack([picks[0][i], picks[1][j], picks[2][k]], axis=1)  # (k, 3) point indices
    one_cell = np.abs(np.abs(np.linalg.det(points[rows])) - 1) <= 0.5
    return cart[rows[one_cell]]
