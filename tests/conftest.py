"""Shared test fixtures: prototype crystals built in code and the developers' dataset folder."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import pytest
from pymatgen.core import Lattice, Structure

from invdesign.data.paths import shared_data_dir


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The shared dataset folder (`../shared/data` or $INVDESIGN_SHARED_DATA); skip if absent."""
    path = shared_data_dir()
    if path is None:
        pytest.skip("../shared/data not found: set INVDESIGN_SHARED_DATA to run dataset tests")
    return path


@cache
def _prototype(spacegroup: str, a: float, species: tuple[str, ...]) -> Structure:
    """Cubic prototype from its space group (slow in pymatgen, ~1 s, hence cached)."""
    coords = [[0, 0, 0], [0.5, 0.5, 0.5]][: len(species)]
    return Structure.from_spacegroup(spacegroup, Lattice.cubic(a), list(species), coords)


@pytest.fixture
def nacl() -> Structure:
    """Rocksalt NaCl, conventional cell (8 atoms), a = 5.64 Å (a fresh copy per test)."""
    return _prototype("Fm-3m", 5.64, ("Na", "Cl")).copy()


@pytest.fixture
def si() -> Structure:
    """Diamond Si, conventional cell (8 atoms), a = 5.43 Å (a fresh copy per test)."""
    return _prototype("Fd-3m", 5.43, ("Si",)).copy()


@pytest.fixture
def cu() -> Structure:
    """fcc Cu, conventional cell (4 atoms), a = 3.61 Å (a fresh copy per test)."""
    return _prototype("Fm-3m", 3.61, ("Cu",)).copy()
