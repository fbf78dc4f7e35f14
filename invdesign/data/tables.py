"""Readers for tabular records: CDVAE-style CSV (CIF text column) and JSON / JSON.gz lists."""

from __future__ import annotations

import gzip
import json
import re
from collections.abc import Iterable, Mapping
from functools import partial
from pathlib import Path
from typing import Any

import pandas as pd
from pymatgen.core import Structure

from invdesign.data.parsing import (
    RowError,
    numeric_fields,
    structure_from_cif,
    structure_from_object,
)
from invdesign.data.validate import RecordCollector

# Fields tried, in order, for a record's identifier when `id_field` is not given.
ID_FIELDS = ("material_id", "mp_id", "id", "name")
# Fields that are never properties even when they look numeric.
NON_PROPERTY_FIELDS = frozenset({"cif", "structure", "formula", "index", "atoms"})
_INDEX_COLUMN = re.compile(r"^(Unnamed: \d+)?$")
_STRUCTURE_FIELDS = ("structure", "cif")


def read_table(path: Path) -> pd.DataFrame:
    """Read a CSV as strings (empty cells stay ""), so number parsing is ours and uniform.

    Raises:
        ValueError: when the file is not a readable CSV or has no rows.
    """
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: not a readable CSV file ({exc})") from exc
    if frame.empty:
        raise ValueError(f"{path}: CSV file has a header but no rows")
    return frame


def excluded_fields(fields: Iterable[str], id_field: str | None) -> set[str]:
    """Fields that are not properties: ids, structures, formulas and unnamed index columns."""
    out = {f for f in fields if f.lower() in NON_PROPERTY_FIELDS or _INDEX_COLUMN.match(f)}
    out.update(ID_FIELDS)
    if id_field is not None:
        out.add(id_field)
    return out


def pick_id_column(columns: Iterable[str], id_field: str | None, path: Path,
                   candidates: Iterable[str] = ID_FIELDS) -> str | None:
    """The id column: `id_field` (must exist) or the first of `candidates` present, else None."""
    columns = list(columns)
    if id_field is not None:
        if id_field not in columns:
            raise ValueError(f"{path}: id field {id_field!r} is not a column (columns: {columns})")
        return id_field
    return next((c for c in candidates if c in columns), None)


def read_cdvae_csv(path: Path, collector: RecordCollector, *, id_field: str | None) -> None:
    """Read a CDVAE-style CSV: one row per crystal, CIF text in a `cif` column.

    Property columns are all mostly-numeric columns except ids, `cif`, `formula` and unnamed
    index columns. Rows are numbered from 0 (the first data row) in skip labels.
    """
    frame = read_table(path)
    if "cif" not in frame.columns:
        raise ValueError(f"{path}: missing column 'cif' (columns: {list(frame.columns)}); "
                         "a CDVAE-style CSV holds each structure as CIF text in a 'cif' column")
    id_col = pick_id_column(frame.columns, id_field, path)
    rows = frame.to_dict("records")
    names = numeric_fields(rows, exclude=excluded_fields(frame.columns, id_col))
    for i, row in enumerate(rows):
        record_id = (row[id_col] if id_col else "") or str(i)
        collector.add(f"{path.name} row {i}", record_id, partial(_cif_cell, row["cif"]), row,
                      names)


def _cif_cell(text: object) -> Structure:
    if not isinstance(text, str):
        raise RowError(f"malformed structure: cif is a {type(text).__name__}, not text")
    if not text.strip():
        raise RowError("missing structure: empty cif cell")
    return structure_from_cif(text)


def load_json(path: Path) -> Any:
    """Decode a JSON or gzip-compressed JSON file.

    Raises:
        ValueError: naming the file when it is not valid (gzipped) JSON.
    """
    with path.open("rb") as fh:
        gzipped = fh.read(2) == b"\x1f\x8b"
    try:
        opener = gzip.open if gzipped else open
        with opener(path, "rt", encoding="utf-8") as fh:
            return json.load(fh)
    except (OSError, EOFError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: not valid JSON ({exc})") from exc


def json_records(data: Any, path: Path) -> list[tuple[str | None, Any]]:
    """(key, record) pairs from a list, {"records": [...]}, {id: record} or a single record."""
    if isinstance(data, list):
        return [(None, r) for r in data]
    if isinstance(data, Mapping):
        for key in ("records", "data", "entries"):
            if isinstance(data.get(key), list):
                return [(None, r) for r in data[key]]
        if any(f in data for f in _STRUCTURE_FIELDS):
            return [(None, data)]
        if data and all(isinstance(v, Mapping) for v in data.values()):
            return [(str(k), v) for k, v in data.items()]
    raise ValueError(f"{path}: expected a JSON list of records (or {{'records': [...]}} or "
                     f"{{id: record}}), got {type(data).__name__}")


def read_json(path: Path, collector: RecordCollector, *, id_field: str | None) -> None:
    """Read JSON records, each with a `structure` (pymatgen dict or a string of one) or `cif`."""
    items = json_records(load_json(path), path)
    if not items:
        raise ValueError(f"{path}: JSON holds no records")
    dicts = [r for _, r in items if isinstance(r, Mapping)]
    names = numeric_fields(dicts, exclude=excluded_fields({k for r in dicts for k in r}, id_field))
    id_keys = (id_field,) if id_field else ID_FIELDS
    for i, (key, record) in enumerate(items):
        label = f"{path.name} row {i}"
        if not isinstance(record, Mapping):
            kind = type(record).__name__
            collector.skip(label, f"malformed record: expected an object, got {kind}")
            continue
        record_id = next((record[k] for k in id_keys if record.get(k) not in (None, "")),
                         key if key is not None else str(i))
        field = next((f for f in _STRUCTURE_FIELDS if record.get(f) is not None), None)
        if field is None:
            collector.skip(label, "missing field: structure", record_id)
            continue
        parse = _cif_cell if field == "cif" else structure_from_object
        collector.add(label, str(record_id), partial(parse, record[field]), record, names)
