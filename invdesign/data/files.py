"""Readers for structure files: single CIF/POSCAR, folders of them, ASE databases and extxyz."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from invdesign.data.archive import read_structures
from invdesign.data.parsing import (
    RowError,
    numeric_fields,
    structure_from_atoms,
    structures_from_file,
)
from invdesign.data.tables import excluded_fields, pick_id_column, read_table
from invdesign.data.validate import RecordCollector

logger = logging.getLogger(__name__)

STRUCTURE_FILE_PATTERNS = ("*.cif", "POSCAR*", "CONTCAR*", "*.vasp")
_FOLDER_ID_FIELDS = ("id", "material_id", "mp_id", "name", "file", "filename")
_ASE_ID_FIELDS = ("id", "name", "mp_id", "material_id")


def is_structure_file(path: Path) -> bool:
    """Whether a file name looks like a CIF or VASP structure file."""
    name = path.name.upper()
    return (path.suffix.lower() in (".cif", ".vasp") or name.startswith(("POSCAR", "CONTCAR")))


def read_structure_file(path: Path, collector: RecordCollector,
                        fields: Mapping[str, object] | None = None,
                        names: list[str] | None = None, label: str | None = None) -> None:
    """Add every structure of one CIF/POSCAR file; the id is the file stem (`stem/k` if several)."""
    label = label or path.name
    try:
        structures = structures_from_file(path)
    except RowError as exc:
        collector.skip(label, exc.reason, path.stem)
        return
    for k, structure in enumerate(structures):
        record_id = path.stem if len(structures) == 1 else f"{path.stem}/{k}"
        collector.add(label, record_id, structure, fields or {}, names or [])


def read_folder(path: Path, collector: RecordCollector, *, id_field: str | None) -> None:
    """Read a folder of structure files plus an optional CSV of properties keyed by file stem.

    The CSV is `properties.csv`, or the only `*.csv` in the folder; its id column (`id_field`,
    else the first of id/material_id/mp_id/name/file/filename) matches file stems or names.
    """
    files = sorted(p for p in path.iterdir() if p.is_file() and is_structure_file(p))
    if not files:
        raise ValueError(f"{path}: folder holds no structure files "
                         f"({', '.join(STRUCTURE_FILE_PATTERNS)})")
    table, names = _folder_properties(path, id_field)
    matched: set[str] = set()
    for file in files:
        key = next((k for k in (file.stem, file.name) if k in table), None)
        if key is not None:
            matched.add(key)
        read_structure_file(file, collector, table[key] if key else {}, names,
                            label=f"{path.name}/{file.name}")
    unmatched = sorted(set(table) - matched)
    if unmatched:
        logger.warning("%s: %d property rows match no structure file (e.g. %s)", path,
                       len(unmatched), ", ".join(unmatched[:3]))


def _folder_properties(path: Path, id_field: str | None) -> tuple[dict[str, dict], list[str]]:
    """Property rows keyed by id from the folder's CSV, and the property names; empty if none."""
    csvs = sorted(path.glob("*.csv"))
    chosen = path / "properties.csv" if (path / "properties.csv").is_file() else None
    if chosen is None and len(csvs) > 1:
        raise ValueError(f"{path}: several CSV files ({[c.name for c in csvs]}); name the "
                         "property table properties.csv")
    chosen = chosen or (csvs[0] if csvs else None)
    if chosen is None:
        return {}, []
    frame = read_table(chosen)
    id_col = pick_id_column(frame.columns, id_field, chosen, _FOLDER_ID_FIELDS)
    if id_col is None:
        raise ValueError(f"{chosen}: no id column matching structure file names (tried "
                         f"{list(_FOLDER_ID_FIELDS)}; columns: {list(frame.columns)})")
    rows = frame.to_dict("records")
    exclude = excluded_fields(frame.columns, id_col) | set(_FOLDER_ID_FIELDS)
    table = {str(row[id_col]).strip(): row for row in rows}
    if len(table) < len(rows):
        logger.warning("%s: %d duplicate ids; the last row wins", chosen, len(rows) - len(table))
    return table, numeric_fields(rows, exclude=exclude)


def read_ase_db(path: Path, collector: RecordCollector, *, id_field: str | None) -> None:
    """Read an ASE database; key_value_pairs are properties, the id a name-like key or row id."""
    import ase.db

    try:
        rows = list(ase.db.connect(str(path), type="db").select())
    except Exception as exc:
        raise ValueError(f"{path}: cannot read as an ASE database ({exc})") from exc
    if not rows:
        raise ValueError(f"{path}: ASE database has no rows")
    fields = [dict(row.key_value_pairs) for row in rows]
    id_keys = (id_field,) if id_field else _ASE_ID_FIELDS
    names = numeric_fields(fields, exclude=excluded_fields(set(id_keys), id_field))
    for row, kvp in zip(rows, fields, strict=True):
        record_id = next((kvp[k] for k in id_keys if kvp.get(k) not in (None, "")), row.id)
        collector.add(f"{path.name} row id={row.id}", str(record_id),
                      partial(_structure_from_row, row), kvp, names)


def _structure_from_row(row: Any):
    return structure_from_atoms(row.toatoms())


def read_extxyz(path: Path, collector: RecordCollector, *, id_field: str | None) -> None:
    """Read (extended) XYZ frames; numeric `atoms.info` entries and scalar results are properties.

    The id is `info[id_field]` (or id/name/mp_id/material_id), else the frame index.
    """
    import ase.io

    try:
        frames = ase.io.read(path, index=":", format="extxyz")
    except Exception as exc:
        raise ValueError(f"{path}: cannot read as extended XYZ ({exc})") from exc
    if not frames:
        raise ValueError(f"{path}: no frames")
    fields = [_frame_fields(atoms) for atoms in frames]
    id_keys = (id_field,) if id_field else _ASE_ID_FIELDS
    names = numeric_fields(fields, exclude=excluded_fields(set(id_keys), id_field))
    for i, (atoms, info) in enumerate(zip(frames, fields, strict=True)):
        record_id = next((info[k] for k in id_keys if info.get(k) not in (None, "")), i)
        collector.add(f"{path.name} frame {i}", str(record_id),
                      partial(structure_from_atoms, atoms), info, names)


def _frame_fields(atoms: Any) -> dict[str, object]:
    """`atoms.info` scalars plus scalar calculator results (extxyz moves `energy` there)."""
    fields: dict[str, object] = {}
    for key, value in atoms.info.items():
        fields[key] = value.item() if isinstance(value, np.ndarray) and value.size == 1 else value
    results = atoms.calc.results if atoms.calc is not None else {}
    for key, value in results.items():
        if np.ndim(value) == 0:
            fields.setdefault(key, float(value))
    return fields


def read_archive(path: Path, collector: RecordCollector, *, id_field: str | None) -> None:
    """Read invdesign's structure archive (`.npz`: a checkpoint's reference.npz, the
    samples.npz of `invdesign sample`); ids as stored, else the entry's index."""
    del id_field  # the archive stores its own ids
    try:
        structures, ids = read_structures(path)
    except (OSError, ValueError, KeyError) as exc:
        raise ValueError(f"{path}: cannot read as an invdesign structure archive "
                         f"({exc})") from exc
    for i, structure in enumerate(structures):
        collector.add(f"{path.name} entry {i}", ids[i] if ids else str(i), structure, {}, [])
