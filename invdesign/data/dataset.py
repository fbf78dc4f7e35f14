"""In-memory crystal dataset: (id, Structure, properties) records plus a load summary."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
from pymatgen.core import Structure


@dataclass(frozen=True)
class CrystalRecord:
    """One crystal: an identifier, its structure and named properties (NaN when missing)."""

    id: str
    structure: Structure
    properties: dict[str, float] = field(default_factory=dict)


@dataclass
class LoadSummary:
    """What happened while reading a file: rows read, rows kept, and why rows were skipped."""

    source: str
    n_read: int = 0
    n_kept: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (row label, reason)

    def skip(self, row: str, reason: str) -> None:
        self.skipped.append((row, reason))

    @property
    def reasons(self) -> Counter[str]:
        """Count of skipped rows per reason category (text before the first ':')."""
        return Counter(reason.split(":")[0] for _, reason in self.skipped)

    def __str__(self) -> str:
        lines = [f"{self.source}: read {self.n_read} rows, kept {self.n_kept}, "
                 f"skipped {len(self.skipped)}"]
        lines += [f"  {n:6d}  {reason}" for reason, n in self.reasons.most_common()]
        return "\n".join(lines)


class CrystalDataset(Sequence[CrystalRecord]):
    """An ordered collection of `CrystalRecord`s with a shared set of property names."""

    def __init__(self, records: Sequence[CrystalRecord], summary: LoadSummary | None = None):
        self.records = list(records)
        self.summary = summary or LoadSummary(source="<memory>", n_read=len(self.records),
                                              n_kept=len(self.records))

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index):  # type: ignore[override]
        if isinstance(index, slice):
            return CrystalDataset(self.records[index], self.summary)
        return self.records[index]

    def __iter__(self) -> Iterator[CrystalRecord]:
        return iter(self.records)

    @property
    def ids(self) -> list[str]:
        return [r.id for r in self.records]

    @property
    def structures(self) -> list[Structure]:
        return [r.structure for r in self.records]

    @property
    def property_names(self) -> list[str]:
        """Property names present in at least one record, in first-seen order."""
        names: dict[str, None] = {}
        for r in self.records:
            names.update(dict.fromkeys(r.properties))
        return list(names)

    def targets(self, names: Sequence[str]) -> np.ndarray:
        """Array of shape (n_records, len(names)) with NaN where a property is missing."""
        out = np.full((len(self.records), len(names)), np.nan)
        for i, r in enumerate(self.records):
            for j, name in enumerate(names):
                out[i, j] = r.properties.get(name, np.nan)
        return out

    def subset(self, indices: Sequence[int] | np.ndarray) -> CrystalDataset:
        return CrystalDataset([self.records[int(i)] for i in indices], self.summary)
