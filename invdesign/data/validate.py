"""Row validation and record collection shared by all readers.

A bad row never stops a load: `RecordCollector.add` checks it, records the reason in the
`LoadSummary` and moves on. Reasons read "category: detail"; the category (text before the first
colon) is what `LoadSummary.reasons` counts.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Callable, Mapping, Sequence

import numpy as np
from pymatgen.core import Structure
from pymatgen.core.periodic_table import DummySpecies

from invdesign.data.dataset import CrystalDataset, CrystalRecord, LoadSummary
from invdesign.data.parsing import Cell, RowError, parse_number, reason_from_exception

logger = logging.getLogger(__name__)

MAX_Z = 100  # heaviest supported element (fermium): the element-property tables stop there
MIN_DISTANCE_A = 0.5  # closest allowed interatomic distance, periodic images included (Å)
# Densest packing of spheres 0.5 Å across: below this volume per atom some pair must be closer.
_MIN_VOLUME_PER_ATOM_A3 = MIN_DISTANCE_A**3 / math.sqrt(2)


def is_modulus(name: str) -> bool:
    """Whether a property is an elastic modulus (must be finite and > 0 when present)."""
    return "modulus" in name.lower()


def check_structure(structure: Structure, *, max_atoms: int | None = None) -> None:
    """Raise `RowError` when a structure cannot be used as a training/reference crystal.

    Checks: at least one atom, finite lattice and coordinates, real elements up to `MAX_Z`, ordered
    sites, at most `max_atoms` atoms, and no two atoms (periodic images included) closer than
    `MIN_DISTANCE_A`.
    """
    n_atoms = len(structure)
    if n_atoms == 0:
        raise RowError("zero atoms")
    if not np.all(np.isfinite(structure.lattice.matrix)):
        raise RowError("non-finite lattice")
    if not np.all(np.isfinite(structure.frac_coords)):
        raise RowError("non-finite coordinates")
    for species in structure.composition:
        if isinstance(species, DummySpecies):
            raise RowError(f"unknown element: {species.symbol}")
        if species.Z > MAX_Z:
            raise RowError(f"unsupported element: {species.symbol} (Z = {species.Z} > {MAX_Z})")
    if not structure.is_ordered:
        site = next(s for s in structure if not s.is_ordered)
        where = np.round(site.frac_coords, 3).tolist()
        raise RowError(f"disordered site: {site.species.formula} at {where}")
    if max_atoms is not None and n_atoms > max_atoms:
        raise RowError(f"too many atoms: {n_atoms} > {max_atoms}")
    volume = structure.lattice.volume
    if not volume > 1e-8:
        raise RowError(f"bad lattice: volume {volume:.3g} A^3")
    if volume / n_atoms < _MIN_VOLUME_PER_ATOM_A3:
        raise RowError(f"atoms too close: volume {volume / n_atoms:.3g} A^3/atom")
    contact = closest_contact(structure, MIN_DISTANCE_A)
    if contact is not None:
        raise RowError(f"atoms too close: {contact[2]:.2f} A")


def closest_contact(structure: Structure, cutoff: float) -> tuple[int, int, float] | None:
    """Closest pair of atoms (i, j, distance in A) with distance < `cutoff`, or None.

    Periodic images count, an atom's own images included (then i == j); two distinct atoms at
    exactly the same position count too (distance 0).
    """
    centers, points, images, dists = structure.get_neighbor_list(cutoff, exclude_self=False)
    itself = (centers == points) & np.all(images == 0, axis=1)
    close = ~itself & (dists < cutoff)
    if not close.any():
        return None
    k = int(np.argmin(np.where(close, dists, np.inf)))
    return int(centers[k]), int(points[k]), float(dists[k])


class RecordCollector:
    """Validate rows one by one and gather the good ones into a `CrystalDataset`.

    Args:
        source: Name of the file or folder being read (used in the summary and errors).
        properties: Property names to keep; None keeps every field the reader offers.
        max_atoms: Skip structures with more atoms than this.
    """

    def __init__(self, source: str, *, properties: Sequence[str] | None = None,
                 max_atoms: int | None = None):
        self.summary = LoadSummary(source=source)
        self.properties = list(properties) if properties is not None else None
        self.max_atoms = max_atoms
        self.records: list[CrystalRecord] = []
        self._id_counts: Counter[str] = Counter()
        self._renamed: list[tuple[str, str]] = []
        self._text_cells: Counter[str] = Counter()
        self._seen_fields: set[str] = set()

    def skip(self, label: str, reason: str, record_id: object = None) -> None:
        """Count a row as read and skipped; `record_id`, when known, is appended to the label."""
        self.summary.n_read += 1
        self.summary.skip(label if record_id is None else f"{label} (id={record_id})", reason)

    def add(self, label: str, record_id: str, structure: Structure | Callable[[], Structure],
            fields: Mapping[str, object], names: Sequence[str]) -> None:
        """Validate one row and keep it as a record, or record why it was skipped.

        Args:
            label: Where the row is, e.g. "val.csv row 17"; the id is appended.
            record_id: The row's identifier (made unique if already taken).
            structure: The structure, or a callable that parses it (lazily, after the cheap checks).
            fields: Raw property values of the row (numbers, strings, None).
            names: Property names this reader found; `properties` overrides them when given.
        """
        self.summary.n_read += 1
        row = f"{label} (id={record_id})"
        try:
            wanted = names if self.properties is None else self.properties
            props = self._properties(fields, wanted)
            if callable(structure):
                structure = structure()
            check_structure(structure, max_atoms=self.max_atoms)
        except Exception as exc:  # one bad row never stops the load
            self.summary.skip(row, reason_from_exception(exc))
            return
        self.records.append(CrystalRecord(self._unique(str(record_id)), structure, props))

    def _properties(self, fields: Mapping[str, object], names: Sequence[str]) -> dict[str, float]:
        props: dict[str, float] = {}
        for name in names:
            value, kind = parse_number(fields.get(name))
            if name in fields:
                self._seen_fields.add(name)
            if kind is Cell.TEXT:
                self._text_cells[name] += 1
            elif kind is Cell.NUMBER and is_modulus(name) and not (value > 0 and value < math.inf):
                raise RowError(f"non-positive modulus: {name}={fields.get(name)}")
            props[name] = value if math.isfinite(value) else math.nan
        return props

    def _unique(self, record_id: str) -> str:
        self._id_counts[record_id] += 1
        if self._id_counts[record_id] == 1:
            return record_id
        new_id = f"{record_id}#{self._id_counts[record_id]}"
        while new_id in self._id_counts:  # an original id may already look like "x#2"
            self._id_counts[record_id] += 1
            new_id = f"{record_id}#{self._id_counts[record_id]}"
        self._id_counts[new_id] += 1
        self._renamed.append((record_id, new_id))
        return new_id

    def finish(self) -> CrystalDataset:
        """Check requested properties were found, log the summary and return the dataset."""
        source = self.summary.source
        missing = [p for p in self.properties or [] if p not in self._seen_fields]
        if missing and self.summary.n_read:
            raise ValueError(f"{source}: no row has the requested properties {missing}")
        self.summary.n_kept = len(self.records)
        for name, n in self._text_cells.items():
            logger.warning("%s: %d non-numeric values of %r read as NaN", source, n, name)
        if self._renamed:
            examples = ", ".join(f"{a} -> {b}" for a, b in self._renamed[:3])
            logger.warning("%s: %d duplicate ids made unique (%s)", source, len(self._renamed),
                           examples)
        if self.summary.skipped:
            examples = "; ".join(f"{row}: {why}" for row, why in self.summary.skipped[:5])
            logger.warning("%s\n  e.g. %s", self.summary, examples)
        else:
            logger.info("%s", self.summary)
        return CrystalDataset(self.records, self.summary)
