"""A batch of generated candidates: structures plus one table row each, written to disk.

The table holds `id`, `formula`, `n_atoms`, the validity / uniqueness / novelty flags and the
reason a check failed, then predicted properties (with `_std` where an ensemble gave one) and,
for optimisation runs, the objective. Rows stay aligned with `structures` (None where decoding
failed).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
from pymatgen.core import Structure

from invdesign.parallel import map_chunks

FileFormat = Literal["cif", "extxyz", "json"]
_SUFFIX = {"cif": ".cif", "extxyz": ".extxyz", "json": ".json"}
PARALLEL_MIN_FILES = 2000  # batch size from which `n_jobs` > 1 pays for its processes


SAMPLE_PREFIX = "sample"  # ids of sampled candidates: sample-00000, sample-00001, ...


def candidate_id(prefix: str, index: int) -> str:
    """The id of candidate `index` in a batch ("sample-00042"); `index_from_id` inverts it."""
    return f"{prefix}-{index:05d}"


def index_from_id(candidate: str) -> int:
    """The batch index in a `candidate_id`."""
    return int(candidate.rsplit("-", 1)[1])


@dataclass
class Candidate:
    """One candidate: its structure (None if decoding failed) and its table row."""

    structure: Structure | None
    row: pd.Series

    def __getitem__(self, key: str):
        return self.row[key]


class Candidates(Sequence[Candidate]):
    """Generated structures and their table, in the same order."""

    def __init__(self, structures: Sequence[Structure | None], table: pd.DataFrame):
        if len(structures) != len(table):
            raise ValueError(f"{len(structures)} structures but {len(table)} table rows")
        self.structures = list(structures)
        self.table = table.reset_index(drop=True)

    def __len__(self) -> int:
        return len(self.structures)

    def __getitem__(self, index):  # type: ignore[override]
        if isinstance(index, slice):
            return self.take(np.arange(len(self))[index])
        return Candidate(self.structures[index], self.table.iloc[index])

    def __iter__(self) -> Iterator[Candidate]:
        for i in range(len(self)):
            yield self[i]

    def take(self, indices: Sequence[int] | np.ndarray) -> Candidates:
        idx = [int(i) for i in indices]
        return Candidates([self.structures[i] for i in idx], self.table.iloc[idx])

    def filter(self, mask: Sequence[bool] | np.ndarray | pd.Series) -> Candidates:
        return self.take(np.flatnonzero(np.asarray(mask, dtype=bool)))

    def to_dataframe(self) -> pd.DataFrame:
        return self.table.copy()

    def cifs(self, n_jobs: int = 1) -> list[str]:
        """Each structure as CIF text (empty where decoding failed); `n_jobs` processes for
        batches of at least `PARALLEL_MIN_FILES` (pymatgen's CifWriter takes ~0.5 ms each)."""
        if n_jobs > 1 and len(self.structures) >= PARALLEL_MIN_FILES:
            return map_chunks(_cif_texts, self.structures, n_jobs)
        return _cif_texts(self.structures)

    def to_csv(self, path: str | Path, cifs: Sequence[str] | None = None) -> Path:
        """The table plus a `cif` column (empty where decoding failed; `cifs` if already
        written): a CDVAE-style CSV that `load_dataset`, `invdesign verify` and `evaluate
        generation` read directly."""
        table = self.table.copy()
        table["cif"] = list(cifs) if cifs is not None else self.cifs()
        table.to_csv(path, index=False)
        return Path(path)

    def write(self, folder: str | Path, format: FileFormat = "cif", *, n_jobs: int = 1
              ) -> Path:
        """Write `candidates.csv` (with a `cif` column) and the structure files.

        CIFs go to `folder/cifs/<id>.cif`; `extxyz` writes all structures to one
        `folder/candidates.extxyz` (properties in each frame's info); `json` writes
        `folder/candidates.json` (pymatgen dicts with the row). `n_jobs`: processes that
        write the CIF text of large batches.
        """
        if format not in _SUFFIX:
            raise ValueError(f"format must be one of {sorted(_SUFFIX)}, got {format!r}")
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        cifs = self.cifs(n_jobs)
        self.to_csv(folder / "candidates.csv", cifs)
        if format == "cif":  # the CSV's CIF text, not a second CifWriter pass
            cif_dir = folder / "cifs"
            cif_dir.mkdir(exist_ok=True)
            for name, s, text in zip(self.table["id"], self.structures, cifs, strict=True):
                if s is not None:
                    (cif_dir / f"{name}.cif").write_text(text)
            return folder
        pairs = [(row, s) for (_, row), s in zip(self.table.iterrows(), self.structures,
                                                 strict=True) if s is not None]
        if format == "extxyz":
            from ase.io import write
            from pymatgen.io.ase import AseAtomsAdaptor

            frames = []
            for row, s in pairs:
                atoms = AseAtomsAdaptor.get_atoms(s)
                atoms.info.update({k: _plain(v) for k, v in row.items()})
                frames.append(atoms)
            write(folder / "candidates.extxyz", frames, format="extxyz")
        else:
            records = [{"row": {k: _plain(v) for k, v in row.items()}, "structure": s.as_dict()}
                       for row, s in pairs]
            (folder / "candidates.json").write_text(json.dumps(records))
        return folder


def _cif_texts(structures: Sequence[Structure | None]) -> list[str]:
    return [s.to(fmt="cif") if s is not None else "" for s in structures]


def _plain(value):
    """A JSON/extxyz-friendly scalar."""
    if isinstance(value, (np.bool_, bool)):
        return bool(value)
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating, float)):
        return float(value)
    if value is pd.NA or value is None:
        return ""
    return str(value)
