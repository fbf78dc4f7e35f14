"""`load_dataset`: one entry point that reads any supported crystal file or folder."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path

from invdesign.data.dataset import CrystalDataset
from invdesign.data.files import (
    read_archive,
    read_ase_db,
    read_extxyz,
    read_folder,
    read_structure_file,
)
from invdesign.data.tables import read_cdvae_csv, read_json
from invdesign.data.validate import RecordCollector

logger = logging.getLogger(__name__)

SUPPORTED_FORMATS = (
    "CDVAE-style CSV (.csv, .csv.gz) with a 'cif' column",
    "JSON / JSON.gz (.json, .json.gz) records with a 'structure' field",
    "ASE database (.db)",
    "extended XYZ (.extxyz, .xyz)",
    "CIF (.cif)",
    "VASP POSCAR/CONTCAR (POSCAR*, CONTCAR*, *.vasp)",
    "a folder of CIF/POSCAR files with an optional properties.csv",
    "invdesign structure archive (.npz: a checkpoint's reference.npz, samples.npz)",
)

_Reader = Callable[..., None]


def _supported() -> str:
    return "Supported formats: " + "; ".join(SUPPORTED_FORMATS) + "."


def _reader_for(path: Path) -> _Reader:
    """Choose the reader from the file name; raise ValueError for an unknown kind."""
    name = path.name.lower()
    if name.endswith((".csv", ".csv.gz")):
        return read_cdvae_csv
    if name.endswith((".json", ".json.gz")):
        return read_json
    if name.endswith(".db"):
        return read_ase_db
    if name.endswith((".extxyz", ".xyz")):
        return read_extxyz
    if name.endswith(".npz"):
        return read_archive
    if name.endswith((".cif", ".vasp")) or name.startswith(("poscar", "contcar")):
        return _read_single
    raise ValueError(f"{path}: unknown file format. {_supported()}")


def _read_single(path: Path, collector: RecordCollector, *, id_field: str | None) -> None:
    del id_field  # a single structure file is named by its stem
    read_structure_file(path, collector)


def load_dataset(
    path: str | os.PathLike[str],
    *,
    properties: Sequence[str] | None = None,
    id_field: str | None = None,
    max_atoms: int | None = None,
) -> CrystalDataset:
    """Read crystals and their properties from a file or folder.

    Bad rows (malformed or disordered structures, unknown elements, atoms closer than 0.5 A,
    non-positive moduli, too many atoms) are skipped and listed in `dataset.summary`; missing
    property values become NaN and the record is kept.

    Args:
        path: A CDVAE CSV, JSON(.gz), ASE .db, extxyz, CIF or POSCAR file, or a folder of
            structure files with an optional properties.csv.
        properties: Property names to keep (NaN where a row lacks one); default: every numeric
            field the file offers.
        id_field: Field/column holding record ids; default: the first of material_id, mp_id,
            id, name present, else the row number (file stem for structure files).
        max_atoms: Skip structures with more atoms than this.

    Returns:
        The dataset; `dataset.summary` tells how many rows were read, kept and why any were
        skipped.

    Raises:
        FileNotFoundError: when `path` does not exist.
        ValueError: for an unknown format, an empty or unreadable file, a CSV without a `cif`
            column, or requested properties that no row has.
    """
    path = Path(path).expanduser()
    if max_atoms is not None and max_atoms < 1:
        raise ValueError(f"max_atoms must be a positive integer, got {max_atoms}")
    if isinstance(properties, str):
        properties = [properties]
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file or folder. {_supported()}")
    if path.is_dir():
        reader: _Reader = read_folder
    else:
        reader = _reader_for(path)
        if path.stat().st_size == 0:
            raise ValueError(f"{path}: file is empty. {_supported()}")
    collector = RecordCollector(str(path), properties=properties, max_atoms=max_atoms)
    reader(path, collector, id_field=id_field)
    return collector.finish()
