"""Uniqueness within a batch and novelty against reference (training) structures.

Two structures are "the same" when pymatgen's
``StructureMatcher(ltol=0.3, stol=0.5, angle_tol=10)`` fits them (CDVAE's settings; primitive
cells compared, volumes scaled, no supercells). ``fit`` is expensive, so it runs only between
structures sharing a prefilter key that ``fit`` itself could never tell apart:

* the comparator's composition hash (``SpeciesComparator``: the fractional composition); ``fit``
  returns False when these differ;
* the number of sites in the Niggli-reduced primitive cell; with ``attempt_supercell=False`` the
  matcher rejects reduced cells of different sizes before looking at geometry.

Each structure is reduced at most once (Niggli, then primitive cell, exactly as ``fit`` does
it), and only when another structure shares its composition; ``fit(...,
skip_structure_reduction=True)`` reuses the reduced cells. No volume or distance key
is used: the matcher scales volumes, so a 10 % larger NaCl is not novel against NaCl.

``fit`` is not symmetric; like ``StructureMatcher.group_structures`` we call
``fit(earlier_or_reference, candidate)``. Ordered cells go through `fit_reduced`, the same
test batched with numpy (`invdesign.validity.matching`), 2-4x faster on generated
batches.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass
from functools import cached_property, partial, reduce

import numpy as np
from pymatgen.analysis.structure_matcher import SpeciesComparator, StructureMatcher
from pymatgen.core import Structure

from invdesign.parallel import (
    Increments,
    Progress,
    gather,
    map_chunks,
    progress_queue,
    tick,
    worker_pool,
)
from invdesign.validity.matching import MatchCell, fit_reduced

logger = logging.getLogger(__name__)

PrefilterKey = tuple[Hashable, int]


@dataclass(frozen=True)
class MatchSettings:
    """StructureMatcher tolerances (defaults: CDVAE's, fractional length / A-normalised / deg)."""

    ltol: float = 0.3
    stol: float = 0.5
    angle_tol: float = 10.0

    def matcher(self) -> StructureMatcher:
        """The configured matcher (primitive cells, scaled volumes, no supercells)."""
        return StructureMatcher(ltol=self.ltol, stol=self.stol, angle_tol=self.angle_tol,
                                primitive_cell=True, scale=True, attempt_supercell=False,
                                comparator=SpeciesComparator())


_PRIMITIVE_TOLERANCE = 0.25  # A, get_primitive_structure's default, used by StructureMatcher


def _may_have_smaller_cell(structure: Structure) -> bool:
    """False only when ``get_primitive_structure()`` would certainly return the cell unchanged.

    Re-does pymatgen's first filter with numpy and a 0.1 % looser tolerance: a translation is a
    candidate only if it moves every site to within 2 x 0.25 A (per axis) of a site of the
    same species. Without a nonzero candidate pymatgen finds no smaller cell.
    """
    groups: dict[str, list[np.ndarray]] = {}
    for site in structure:
        groups.setdefault(site.species_string, []).append(site.frac_coords)
    coords = [np.array(groups[label]) for label in sorted(groups)]  # pymatgen's group order
    if reduce(math.gcd, (len(g) for g in coords)) == 1:
        return False
    tol = 2 * _PRIMITIVE_TOLERANCE / np.array(structure.lattice.abc) * 1.001
    smallest = min(coords, key=len)  # the same group pymatgen takes its candidates from
    vectors = smallest[1:] - smallest[0]
    for group in coords:
        shifted = vectors[:, None, None, :] + group[None, :, None, :] - group[None, None, :, :]
        shifted -= np.round(shifted)
        close = np.all(np.abs(shifted) < tol, axis=-1)  # (vector, site, other site)
        vectors = vectors[close.any(axis=2).all(axis=1)]
        if len(vectors) == 0:
            return False
    return True


def reduce_like_matcher(structure: Structure) -> Structure:
    """Niggli cell, then primitive cell: the cell ``StructureMatcher.fit`` compares.

    The costly ``get_primitive_structure`` is skipped when it would return the cell unchanged
    (species counts with gcd 1, or no lattice translation maps the structure onto itself).
    """
    reduced = Structure.from_sites(structure).get_reduced_structure(reduction_algo="niggli")
    if _may_have_smaller_cell(reduced):
        reduced = reduced.get_primitive_structure()
    return reduced


def _comparable(structure: Structure) -> bool:
    matrix = structure.lattice.matrix
    return (len(structure) > 0 and bool(np.isfinite(matrix).all())
            and bool(np.isfinite(structure.frac_coords).all())
            and abs(float(np.linalg.det(matrix))) > 1e-6)


class PreparedStructure:
    """A structure ready for matching: composition hash at once, reduced cell on first use.

    Reduction (~1-5 ms) is the expensive step, and a structure whose composition no other
    structure shares never needs it. Build with `prepare_structure`; picklable.

    Attributes:
        structure: The input structure.
        comp_hash: The comparator's composition hash (fractional composition); None when the
            structure cannot be compared (empty, non-finite or singular lattice).
    """

    def __init__(self, structure: Structure) -> None:
        self.structure = structure
        comparable = _comparable(structure)
        self.comp_hash = SpeciesComparator().get_hash(structure.composition) if comparable else None

    @classmethod
    def with_hash(cls, structure: Structure, comp_hash: Hashable) -> PreparedStructure:
        """The prepared `structure`, given the `comp_hash` a `PreparedStructure` of it has
        (computed in another process, say)."""
        item = cls.__new__(cls)
        item.structure, item.comp_hash = structure, comp_hash
        return item

    @cached_property
    def reduced(self) -> Structure | None:
        """Niggli-reduced primitive cell (the unreduced cell if pymatgen fails to reduce it)."""
        if self.comp_hash is None:
            return None
        try:
            return reduce_like_matcher(self.structure)
        except Exception as exc:  # pymatgen raises various errors on odd lattices
            logger.debug("cell reduction failed (%s); matching the unreduced cell", exc)
            return Structure.from_sites(self.structure)

    @cached_property
    def cell(self) -> MatchCell | None:
        """The reduced cell's arrays for `fit_reduced`; None when it is disordered (pymatgen's
        ``fit`` compares those) or cannot be compared."""
        reduced = self.reduced
        return MatchCell(reduced) if reduced is not None and reduced.is_ordered else None

    @cached_property
    def shape(self) -> np.ndarray:
        """Scale-free cell descriptor (reduced lengths over the cube root of the volume per
        site, angles in radians); only orders candidates, never decides a match."""
        reduced = self.reduced
        if reduced is None:
            return np.zeros(6)
        scale = (reduced.volume / len(reduced)) ** (1 / 3)
        return np.r_[np.array(reduced.lattice.abc) / scale,
                     np.radians(reduced.lattice.angles)]

    @property
    def key(self) -> PrefilterKey | None:
        """Prefilter key (composition hash, sites in the reduced cell); reduces on first use."""
        reduced = self.reduced
        return None if reduced is None else (self.comp_hash, len(reduced))


def prepare_structure(structure: Structure | PreparedStructure) -> PreparedStructure:
    """Wrap a structure for matching (cheap; never raises for odd lattices)."""
    return structure if isinstance(structure, PreparedStructure) else PreparedStructure(structure)


class ReferenceIndex:
    """Structures grouped by prefilter key, for fast "seen before?" queries.

    Adding a structure only hashes its composition. Cells are reduced the first time a query
    with the same composition arrives, so indexing a large training set costs little and a
    candidate with a composition absent from the index is novel without any reduction.

    Args:
        structures: Reference structures (e.g. the training set).
        settings: Matcher tolerances; CDVAE's by default.
    """

    def __init__(self, structures: Iterable[Structure | PreparedStructure] = (), *,
                 settings: MatchSettings | None = None) -> None:
        self.settings = settings or MatchSettings()
        self._matcher = self.settings.matcher()
        self._by_composition: dict[Hashable, list[tuple[int, PreparedStructure]]] = {}
        self._by_size: dict[Hashable, dict[int, list[tuple[int, PreparedStructure]]]] = {}
        self._size = 0
        for structure in structures:
            self.add(structure)

    def __len__(self) -> int:
        return self._size

    def add(self, structure: Structure | PreparedStructure) -> int:
        """Add one structure; returns its index (uncomparable ones are counted, never matched)."""
        item = prepare_structure(structure)
        index = self._size
        self._size += 1
        if item.comp_hash is not None:
            self._by_composition.setdefault(item.comp_hash, []).append((index, item))
            by_size = self._by_size.get(item.comp_hash)
            if by_size is not None and item.key is not None:
                by_size.setdefault(item.key[1], []).append((index, item))
        return index

    def has_composition(self, structure: Structure | PreparedStructure) -> bool:
        """Whether some indexed structure has the same composition (no reduction needed)."""
        return prepare_structure(structure).comp_hash in self._by_composition

    def _candidates(self, item: PreparedStructure) -> list[tuple[int, PreparedStructure]]:
        """Indexed (index, structure) sharing `item`'s prefilter key, in insertion order."""
        by_size = self._by_size.get(item.comp_hash)
        if by_size is None:
            by_size = {}
            for index, member in self._by_composition[item.comp_hash]:
                if member.key is not None:
                    by_size.setdefault(member.key[1], []).append((index, member))
            self._by_size[item.comp_hash] = by_size
        return by_size.get(item.key[1], []) if item.key is not None else []

    def find(self, structure: Structure | PreparedStructure) -> int | None:
        """Index of an indexed structure that matches, or None.

        Candidates are tried most similar cell first, so a duplicate usually matches at the
        first `fit`; which of several matching structures is returned is not specified.
        """
        item = prepare_structure(structure)
        if item.comp_hash is None or item.comp_hash not in self._by_composition:
            return None
        candidates = self._candidates(item)
        if len(candidates) > 1:
            shapes = np.array([member.shape for _, member in candidates])
            order = np.argsort(np.abs(shapes - item.shape).sum(1), kind="stable")
            candidates = [candidates[i] for i in order]
        for index, member in candidates:
            if self._fits(member, item):
                return index
        return None

    def _fits(self, reference: PreparedStructure, candidate: PreparedStructure) -> bool:
        """``StructureMatcher.fit(reference, candidate)`` on the reduced cells: the batched
        `fit_reduced` for ordered cells, pymatgen itself otherwise."""
        try:
            if reference.cell is not None and candidate.cell is not None:
                settings = self.settings
                return fit_reduced(reference.cell, candidate.cell, ltol=settings.ltol,
                                   stol=settings.stol, angle_tol=settings.angle_tol)
            return self._matcher.fit(reference.reduced, candidate.reduced,
                                     skip_structure_reduction=True)
        except Exception as exc:  # a failed comparison means "not shown to match"
            logger.debug("structure matching failed (%s)", exc)
            return False

    def contains(self, structure: Structure | PreparedStructure) -> bool:
        """Whether some indexed structure matches `structure`."""
        return self.find(structure) is not None

    def novel_mask(self, structures: Sequence[Structure | PreparedStructure], *,
                   n_jobs: int = 1, progress: Progress | None = None) -> np.ndarray:
        """Boolean mask: True where a structure matches no indexed structure.

        Structures that cannot be compared (empty, non-finite or singular lattice) get False.
        With `n_jobs` > 1, compositions are dealt to that many processes when at least
        `PARALLEL_MIN_SHARED` structures share a composition with the index, or when they
        share it with at least `PARALLEL_MIN_PAIRS` indexed structures in all (a few
        samples of a one-element dataset against its whole training set); same mask.
        `progress(done, total)` hears how many structures are settled, from the worker
        processes too.
        """
        items = [prepare_structure(s) for s in structures]
        known = [i for i, item in enumerate(items) if item.comp_hash in self._by_composition]
        if n_jobs > 1 and self._worth_dealing(items, known):
            return _match_in_workers(items, self, check_unique=False, n_jobs=n_jobs,
                                     novel_progress=progress)[1]
        mask = np.array([item.comp_hash is not None for item in items], dtype=bool)
        if progress is not None:
            progress(len(items) - len(known), len(items))
        for done, i in enumerate(known, start=len(items) - len(known) + 1):
            mask[i] = self.find(items[i]) is None
            if progress is not None:
                progress(done, len(items))
        return mask

    def _worth_dealing(self, items: Sequence[PreparedStructure], known: Sequence[int]) -> bool:
        """Whether novelty of `items` (`known`: those sharing a composition with the index)
        pays for worker processes: at least `PARALLEL_MIN_SHARED` known items, or at least
        `PARALLEL_MIN_PAIRS` (item, indexed structure) pairs of one composition."""
        pairs = sum(len(self._by_composition[items[i].comp_hash]) for i in known)
        return len(known) >= PARALLEL_MIN_SHARED or pairs >= PARALLEL_MIN_PAIRS

    def _subset(self, compositions: set) -> ReferenceIndex:
        """A smaller index holding only those of these compositions it has (to ship to a
        worker process)."""
        subset = ReferenceIndex(settings=self.settings)
        subset._by_composition = {c: self._by_composition[c] for c in compositions
                                  if c in self._by_composition}
        subset._size = self._size
        return subset


PARALLEL_MIN_SHARED = 500  # structures sharing compositions before `n_jobs` > 1 pays off
PARALLEL_MIN_PAIRS = 100_000  # or (candidate, indexed structure) pairs of one composition


def _batch_counts(items: Sequence[PreparedStructure]) -> Counter:
    return Counter(item.comp_hash for item in items if item.comp_hash is not None)


def _worth_dealing(shared: Counter) -> bool:
    """Whether uniqueness pays for worker processes: at least `PARALLEL_MIN_SHARED`
    structures share their composition with another."""
    return sum(c for c in shared.values() if c > 1) >= PARALLEL_MIN_SHARED


def unique_mask(structures: Sequence[Structure | PreparedStructure], *,
                settings: MatchSettings | None = None, n_jobs: int = 1,
                progress: Progress | None = None) -> np.ndarray:
    """Boolean mask: True for the first occurrence of each distinct structure in a batch.

    A structure is compared with the distinct structures before it (with the same prefilter
    key); structures that cannot be compared (empty, non-finite or singular lattice) get False.
    With `n_jobs` > 1, compositions (or, when one composition dominates, prefilter keys) are
    split over that many processes (they never match across groups, so the mask is the same)
    when at least `PARALLEL_MIN_SHARED` structures share a composition with another.
    `progress(done, total)` hears how many structures are settled, from the workers too.
    """
    items = [prepare_structure(s) for s in structures]
    shared = _batch_counts(items)
    if n_jobs > 1 and _worth_dealing(shared):
        return _match_in_workers(items, settings=settings, n_jobs=n_jobs,
                                 unique_progress=progress)[0]
    seen = ReferenceIndex(settings=settings)
    mask = np.zeros(len(items), dtype=bool)
    if progress is not None:
        progress(0, len(items))
    for i, item in enumerate(items):
        if item.comp_hash is not None:
            if shared[item.comp_hash] == 1:  # nothing else has this composition: no reduction
                mask[i] = True
            elif seen.find(item) is None:
                mask[i] = True
                seen.add(item)
        if progress is not None:
            progress(i + 1, len(items))
    return mask


def unique_and_novel_masks(structures: Sequence[Structure | PreparedStructure],
                           reference: ReferenceIndex | None, *,
                           settings: MatchSettings | None = None, n_jobs: int = 1,
                           unique_progress: Progress | None = None,
                           novel_progress: Progress | None = None
                           ) -> tuple[np.ndarray, np.ndarray | None]:
    """`unique_mask` and `reference.novel_mask` (None without a reference) of one batch.

    With `n_jobs` > 1, when either check is worth dealing to processes, both run in one pass:
    each process takes whole compositions and reduces each of their cells once for both
    (two separate passes would reduce every cell twice, in different processes).
    """
    items = [prepare_structure(s) for s in structures]
    if reference is not None and settings is not None and settings != reference.settings:
        raise ValueError(f"settings {settings} differ from the reference index's "
                         f"{reference.settings}")
    if n_jobs > 1:
        known = ([] if reference is None else
                 [i for i, item in enumerate(items) if item.comp_hash in reference._by_composition])
        if _worth_dealing(_batch_counts(items)) or (
                reference is not None and reference._worth_dealing(items, known)):
            return _match_in_workers(items, reference, settings=settings, n_jobs=n_jobs,
                                     unique_progress=unique_progress,
                                     novel_progress=novel_progress)
    unique = unique_mask(items, settings=settings, progress=unique_progress)
    novel = None if reference is None else reference.novel_mask(items, progress=novel_progress)
    return unique, novel


def _match_in_workers(items: list[PreparedStructure],
                      reference: ReferenceIndex | None = None, *, check_unique: bool = True,
                      settings: MatchSettings | None = None, n_jobs: int = 2,
                      unique_progress: Progress | None = None,
                      novel_progress: Progress | None = None
                      ) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Uniqueness (`check_unique`) and novelty against `reference` (when given) of `items`,
    with whole compositions dealt to `n_jobs` worker processes; the masks are the serial ones.

    When one composition would leave the other processes idle (a single-element dataset such
    as Carbon-24), its cells are first reduced in parallel and dealt by prefilter key
    (composition, sites in the reduced cell) instead: structures with different keys never
    match, so the masks are the same. Progress comes from inside the workers, per check.
    """
    settings = reference.settings if reference is not None else settings
    shared = _batch_counts(items)
    comparable = np.array([item.comp_hash is not None for item in items], dtype=bool)
    repeated = (np.array([shared.get(item.comp_hash, 0) > 1 for item in items], dtype=bool)
                if check_unique else np.zeros(len(items), dtype=bool))
    known = (np.array([item.comp_hash in reference._by_composition for item in items],
                      dtype=bool) if reference is not None else np.zeros(len(items), dtype=bool))
    dealt = np.nonzero(repeated | known)[0].tolist()
    unique = comparable & ~repeated if check_unique else None
    novel = comparable & ~known if reference is not None else None
    if not dealt:
        for mask, progress in ((unique, unique_progress), (novel, novel_progress)):
            if mask is not None and progress is not None:
                progress(len(items), len(items))
        return unique, novel
    items, bins = _deal(items, dealt, n_jobs, reference)
    if reference is not None:
        reference = reference._subset({items[i].comp_hash for i in dealt})
    stages = [(unique_progress, len(items) - len(dealt), len(items)),
              (novel_progress, len(items) - len(dealt), len(items))]
    for progress, done, total in stages:
        if progress is not None:
            progress(done, total)
    ticks = progress_queue() if unique_progress or novel_progress else None
    with worker_pool(len(bins), shared=(items, reference), ticks=ticks) as submit:
        futures = [submit(_match_part, b, settings, check_unique) for b in bins]
        parts = gather(futures, ticks, stages)
    for indices, (unique_part, novel_part) in zip(bins, parts, strict=True):
        if unique is not None:
            unique[indices] = unique_part
        if novel is not None:
            novel[indices] = novel_part
    return unique, novel


def _match_part(shared: tuple[list[PreparedStructure], ReferenceIndex | None],
                indices: list[int], settings: MatchSettings | None, check_unique: bool
                ) -> tuple[np.ndarray | None, np.ndarray | None]:
    """In a worker: `_match_in_workers` of the items at `indices` (whole compositions or keys)."""
    items, reference = shared
    part = [items[i] for i in indices]
    unique = novel = None
    if check_unique:
        unique = unique_mask(part, settings=settings,
                             progress=Increments(partial(tick, stage=0)))
    if reference is not None:
        novel = reference.novel_mask(part, progress=Increments(partial(tick, stage=1)))
    return unique, novel


def _composition_key(item: PreparedStructure) -> Hashable:
    return item.comp_hash


def _prefilter_key(item: PreparedStructure) -> Hashable:
    return item.key


def _reduce_chunk(items: list[PreparedStructure]) -> list[PreparedStructure]:
    """The items with their reduced cells computed (returned to the parent with them)."""
    for item in items:
        _ = item.reduced
    return items


def _deal(items: list[PreparedStructure], indices: list[int], n_jobs: int,
          reference: ReferenceIndex | None = None
          ) -> tuple[list[PreparedStructure], list[list[int]]]:
    """`indices` split into at most `n_jobs` sorted bins of whole compositions.

    When one composition would leave the other processes idle (a single-element dataset such
    as Carbon-24), the cells of `indices` are first reduced in parallel and whole prefilter
    keys (composition, sites in the reduced cell) are dealt instead: structures with different
    keys never match, so no result changes. Returns the items (reduced where that happened)
    and the bins. A group's cost is taken as its size times (its size + the structures of its
    composition in `reference`).
    """
    sizes = Counter(items[i].comp_hash for i in indices)
    key: Callable[[PreparedStructure], Hashable] = _composition_key
    if sizes and max(sizes.values()) ** 2 > sum(c * c for c in sizes.values()) / n_jobs:
        items = list(items)
        reduced = map_chunks(_reduce_chunk, [items[i] for i in indices], n_jobs)
        for i, item in zip(indices, reduced, strict=True):
            items[i] = item
        key = _prefilter_key
    indexed = reference._by_composition if reference is not None else {}
    groups: dict[Hashable, list[int]] = {}
    for i in indices:
        groups.setdefault(key(items[i]), []).append(i)
    bins: list[list[int]] = [[] for _ in range(n_jobs)]
    load = [0] * n_jobs
    for members in sorted(groups.values(), key=len, reverse=True):
        j = load.index(min(load))
        bins[j].extend(members)
        load[j] += len(members) * (len(members)
                                   + len(indexed.get(items[members[0]].comp_hash, ())))
    return items, [sorted(b) for b in bins if b]


def novel_mask(structures: Sequence[Structure | PreparedStructure],
               reference: ReferenceIndex | Iterable[Structure], *,
               settings: MatchSettings | None = None, n_jobs: int = 1) -> np.ndarray:
    """Boolean mask: True where a structure matches none of `reference`.

    Args:
        structures: Candidates.
        reference: A `ReferenceIndex` (build it once for many calls) or reference structures.
        settings: Matcher tolerances for a new index; must agree with an index passed in.

    Raises:
        ValueError: If `settings` differ from those of the `ReferenceIndex` given.
    """
    if isinstance(reference, ReferenceIndex):
        if settings is not None and settings != reference.settings:
            raise ValueError(f"settings {settings} differ from the reference index's "
                             f"{reference.settings}")
        index = reference
    else:
        index = ReferenceIndex(reference, settings=settings)
    return index.novel_mask(structures, n_jobs=n_jobs)
