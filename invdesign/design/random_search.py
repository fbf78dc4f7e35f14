"""Random-search baseline generator: SMACT charge-balanced compositions + pyxtal structures.

The reference "random search" that generative models are compared against: enumerate every
charge-balanced composition of a set of elements up to a cell size, then for each crystal draw a
composition uniformly, draw a space group uniformly from those whose Wyckoff positions can hold
the atom counts, and let pyxtal place the atoms at random symmetric positions.

A composition counts as charge balanced when some combination of SMACT oxidation states (the
``smact14`` list, as in :func:`invdesign.validity.composition.composition_validity`) makes it
neutral and passes the Pauling electronegativity test. Unlike CDVAE's validity rule, all-metal
compositions are not accepted as "alloys" for free: they must be charge balanced too.

All randomness comes from one seeded ``numpy.random.Generator``, so the same arguments give the
same structures (unless ``time_limit`` cuts a run short).
"""

from __future__ import annotations

import contextlib
import io
import itertools
import logging
import math
import time
import warnings
from collections.abc import Iterator, Sequence
from functools import cache, lru_cache, reduce

import numpy as np
import smact
from pymatgen.core import Composition, Element, Structure
from smact.screening import pauling_test

from invdesign.validity.composition import composition_validity

logger = logging.getLogger(__name__)

_METALS = frozenset(smact.metals)
_SPACE_GROUPS = tuple(range(2, 231))  # P1 excluded, as in the usual random-search baseline
_MAX_SG_REJECTIONS = 200  # uniform draws before falling back to listing compatible groups


def _check_elements(elements: Sequence[str]) -> tuple[str, ...]:
    """Deduplicated element symbols (input order); ValueError naming any unknown symbol."""
    if isinstance(elements, str):
        raise ValueError(f"elements must be a sequence of symbols, got the string {elements!r}")
    symbols = tuple(dict.fromkeys(str(e).strip() for e in elements))
    if not symbols:
        raise ValueError("elements is empty")
    bad = []
    for s in symbols:
        if not Element.is_valid_symbol(s):
            bad.append(s)
            continue
        try:
            smact.Element(s)
        except (KeyError, NameError, ValueError):
            bad.append(s)
    if bad:
        raise ValueError(f"unknown element symbol(s): {', '.join(map(repr, bad))}")
    return symbols


def _count_vectors(k: int, total: int) -> Iterator[tuple[int, ...]]:
    """All k-tuples of positive integers with sum <= total, in lexicographic order."""
    if k == 0:
        yield ()
        return
    for first in range(1, total - (k - 1) + 1):
        for rest in _count_vectors(k - 1, total - first):
            yield (first, *rest)


@cache
def _metal_charge_balanced(symbols: tuple[str, ...], counts: tuple[int, ...]) -> bool:
    """SMACT charge neutrality + Pauling test for an all-metal composition."""
    elements = [smact.Element(s) for s in symbols]
    states = [tuple(getattr(e, "oxidation_states_smact14", e.oxidation_states) or ())
              for e in elements]
    enegs = [e.pauling_eneg for e in elements]
    for combo in itertools.product(*states):
        if sum(o * c for o, c in zip(combo, counts, strict=True)) == 0 and pauling_test(
                combo, enegs):
            return True
    return False


def _is_charge_balanced(symbols: tuple[str, ...], counts: tuple[int, ...]) -> bool:
    divisor = reduce(math.gcd, counts)
    reduced = tuple(c // divisor for c in counts)
    if all(s in _METALS for s in symbols):  # composition_validity would call it an alloy
        return _metal_charge_balanced(symbols, reduced)
    return composition_validity(Composition(dict(zip(symbols, reduced, strict=True)))).valid


@lru_cache(maxsize=64)
def _compositions(symbols: tuple[str, ...], max_atoms: int,
                  max_species: int) -> tuple[tuple[tuple[str, int], ...], ...]:
    out = []
    for k in range(2, min(max_species, len(symbols)) + 1):
        for subset in itertools.combinations(symbols, k):
            balanced: dict[tuple[int, ...], bool] = {}
            for counts in _count_vectors(k, max_atoms):
                divisor = reduce(math.gcd, counts)
                reduced = tuple(c // divisor for c in counts)
                if reduced not in balanced:
                    balanced[reduced] = _is_charge_balanced(subset, reduced)
                if balanced[reduced]:
                    out.append(tuple(zip(subset, counts, strict=True)))
    return tuple(out)


def _checked_compositions(elements: Sequence[str], max_atoms: int,
                          max_species: int) -> tuple[tuple[tuple[str, int], ...], ...]:
    symbols = _check_elements(elements)
    if max_atoms < 2:
        raise ValueError(f"max_atoms must be >= 2, got {max_atoms}")
    if max_species < 2:
        raise ValueError(f"max_species must be >= 2, got {max_species}")
    return _compositions(symbols, int(max_atoms), int(max_species))


def charge_balanced_compositions(elements: Sequence[str], *, max_atoms: int = 20,
                                 max_species: int = 2) -> list[dict[str, int]]:
    """Charge-balanced compositions (element -> atoms per cell) drawn from ``elements``.

    Every composition has 2 to ``max_species`` distinct elements, at least one atom of each and
    at most ``max_atoms`` atoms in all; non-reduced multiples (``Mg2O2``) are listed as separate
    cells. Kept when some SMACT oxidation-state combination makes it neutral and passes the
    Pauling electronegativity test (see the module docstring).

    Order is deterministic: by number of species, then element subsets in the order of
    ``elements`` (duplicates dropped), then atom counts lexicographically.

    Raises:
        ValueError: If ``elements`` is empty or has an unknown symbol (named in the message),
            or ``max_atoms`` < 2 or ``max_species`` < 2.
    """
    return [dict(c) for c in _checked_compositions(elements, max_atoms, max_species)]


@cache
def _group(number: int):  # -> pyxtal.symmetry.Group (built lazily: ~6 ms each)
    from pyxtal.symmetry import Group

    return Group(number)


@lru_cache(maxsize=65536)
def _compatible(number: int, counts: tuple[int, ...]) -> bool:
    try:
        return bool(_group(number).check_compatible(list(counts))[0])
    except Exception:  # pyxtal internals: treat any failure as "does not fit"
        return False


def _draw_space_group(counts: tuple[int, ...], rng: np.random.Generator) -> int | None:
    """Uniform over the space groups 2..230 whose Wyckoff positions can hold ``counts``."""
    for _ in range(_MAX_SG_REJECTIONS):  # rejection sampling: uniform over the compatible ones
        number = int(rng.choice(_SPACE_GROUPS))
        if _compatible(number, counts):
            return number
    allowed = [g for g in _SPACE_GROUPS if _compatible(g, counts)]
    return int(rng.choice(allowed)) if allowed else None


def _build(number: int, species: list[str], counts: list[int],
           rng: np.random.Generator) -> Structure | None:
    """One pyxtal random crystal as a pymatgen Structure, or None if pyxtal fails."""
    from pyxtal import pyxtal

    sink = io.StringIO()
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(sink), \
                contextlib.redirect_stderr(sink):
            warnings.simplefilter("ignore")
            crystal = pyxtal()
            # A Generator (not an int seed) so pyxtal's internal retries differ from each other.
            crystal.from_random(3, number, species, counts, random_state=rng)
            if not crystal.valid:
                return None
            structure = crystal.to_pymatgen()
    except Exception as exc:  # one bad draw must never stop the search
        logger.debug("pyxtal failed for %s %s in space group %d: %s", species, counts, number,
                     exc)
        return None
    if len(structure) != sum(counts):
        return None
    return structure


def random_structures(n: int, *, elements: Sequence[str], max_atoms: int = 20, seed: int = 0,
                      max_species: int = 2, max_tries_per_structure: int = 5,
                      time_limit: float | None = None) -> list[Structure]:
    """``n`` random symmetric crystals with charge-balanced compositions.

    For each crystal: draw a composition uniformly from :func:`charge_balanced_compositions`,
    draw a space group uniformly from those in 2..230 compatible with its atom counts, and build
    it with pyxtal (counts are per conventional cell, so the primitive cell of a centred group
    can be smaller). A failed build is retried with a new composition and space group, up to
    ``max_tries_per_structure`` draws; then that crystal is skipped and a new one started.
    Failures never raise.

    Args:
        n: Number of structures wanted.
        elements: Element symbols to combine.
        max_atoms: Most atoms in the (conventional) cell.
        seed: Seed of the numpy Generator behind every random choice (pyxtal's included).
        max_species: Most distinct elements per composition (at least 2).
        max_tries_per_structure: Draws per crystal before it is skipped.
        time_limit: Stop after this many seconds (checked between draws).

    Returns:
        The structures made, in generation order: ``n`` of them unless ``time_limit`` ran out
        (or, as a safeguard against endless loops, ``10 * n + 100`` crystals in a row failed).

    Raises:
        ValueError: For a bad element list (unknown symbols are named), no charge-balanced
            composition, or bad ``n`` / ``max_atoms`` / ``max_species`` /
            ``max_tries_per_structure``.
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    if max_tries_per_structure < 1:
        raise ValueError(f"max_tries_per_structure must be >= 1, got {max_tries_per_structure}")
    compositions = _checked_compositions(elements, max_atoms, max_species)
    if not compositions:
        raise ValueError(f"no charge-balanced composition of {list(elements)} with <= "
                         f"{max_atoms} atoms and <= {max_species} species")

    rng = np.random.default_rng(seed)
    start = time.monotonic()
    out: list[Structure] = []
    failed_in_a_row = 0
    while len(out) < n and failed_in_a_row < 10 * n + 100:
        structure = None
        for _ in range(max_tries_per_structure):
            if time_limit is not None and time.monotonic() - start > time_limit:
                return out
            species, counts = zip(*compositions[int(rng.integers(len(compositions)))],
                                  strict=True)
            number = _draw_space_group(tuple(counts), rng)
            if number is None:
                continue
            # Own child Generator per draw: each build consumes a fixed amount of `rng`.
            child = np.random.default_rng(int(rng.integers(2**63)))
            structure = _build(number, list(species), list(counts), child)
            if structure is not None:
                break
        if structure is None:
            failed_in_a_row += 1
        else:
            failed_in_a_row = 0
            out.append(structure)
    if len(out) < n and not (time_limit is not None and time.monotonic() - start > time_limit):
        logger.warning("random_structures: gave up after %d failed crystals in a row; made %d "
                       "of %d", failed_in_a_row, len(out), n)
    return out
