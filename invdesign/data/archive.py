"""Compact storage of many ordered crystals in one `.npz` (lattices, species, coordinates).

Checkpoints ship their training structures this way so that novelty is checked out of the box,
without the original dataset file.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from pymatgen.core import Lattice, Structure


def write_structures(path: str | Path, structures: Sequence[Structure],
                     ids: Sequence[str] | None = None) -> Path:
    """Write structures (and optional ids) to a compressed `.npz` file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    n_atoms = np.array([len(s) for s in structures], dtype=np.int32)
    np.savez_compressed(
        path,
        lattices=np.array([s.lattice.matrix for s in structures],
                          dtype=np.float64).reshape(-1, 3, 3),
        n_atoms=n_atoms,
        numbers=np.concatenate([[site.specie.Z for site in s] for s in structures]
                               ).astype(np.int16) if len(structures) else np.zeros(0, np.int16),
        frac_coords=np.concatenate([s.frac_coords for s in structures]).astype(np.float64)
        if len(structures) else np.zeros((0, 3)),
        ids=np.array(list(ids) if ids is not None else [], dtype=str),
    )
    return path


def read_structures(path: str | Path) -> tuple[list[Structure], list[str]]:
    """Structures and ids (empty list when none were stored) from `write_structures`' file."""
    with np.load(path, allow_pickle=False) as f:
        ends = np.cumsum(f["n_atoms"])
        starts = ends - f["n_atoms"]
        numbers, coords = f["numbers"], f["frac_coords"]
        structures = [Structure(Lattice(m), numbers[a:b].tolist(), coords[a:b])
                      for m, a, b in zip(f["lattices"], starts, ends, strict=True)]
        return structures, [str(x) for x in f["ids"]]
