"""Property labels kept in a separate table keyed by record id (e.g. oracle labels).

A label table is a CSV with an `id` column; `read_labels` takes the columns it is told to,
under property names of the caller's choice, and `join_labels` adds them to the records of a
dataset with the same ids. Rows whose `status` column (when the table has one) is not "ok"
carry no labels: an oracle row that failed says nothing about the property.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from invdesign.data.dataset import CrystalDataset
from invdesign.data.parsing import Cell, parse_number
from invdesign.data.tables import read_table

STATUS_COLUMN = "status"
OK_STATUS = "ok"


@dataclass(frozen=True)
class LabelTable:
    """Labels by record id, with where they came from and which rows gave none.

    Attributes:
        path: The table read.
        sha256: Content hash of the table (provenance for checkpoint cards).
        values: id -> {property name: value}; only finite, accepted values.
        skipped: (row label, reason) for every row or cell that gave no label.
    """

    path: Path
    sha256: str
    values: dict[str, dict[str, float]]
    skipped: list[tuple[str, str]] = field(default_factory=list)

    @property
    def properties(self) -> list[str]:
        """Property names the table provides, in column order of the mapping used to read it."""
        names: dict[str, None] = {}
        for labels in self.values.values():
            names.update(dict.fromkeys(labels))
        return list(names)

    def counts(self) -> dict[str, int]:
        """Number of labelled ids per property."""
        return {name: sum(name in v for v in self.values.values()) for name in self.properties}


def read_labels(path: str | Path, columns: Mapping[str, str], *,
                positive: tuple[str, ...] = ()) -> LabelTable:
    """Read `columns` (table column -> property name) of a label CSV keyed by `id`.

    Args:
        path: CSV with an `id` column (e.g. the output of `invdesign label`).
        columns: Which columns to read and the property name each becomes.
        positive: Property names whose values must be > 0 (log-transformed targets); other
            values are skipped with a reason.

    Raises:
        FileNotFoundError: When `path` does not exist.
        ValueError: When the table has no `id` column or lacks a requested column.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"label table {path} does not exist")
    frame = read_table(path)
    missing = [c for c in ("id", *columns) if c not in frame.columns]
    if missing:
        raise ValueError(f"{path}: label table lacks column(s) {missing}; it has "
                         f"{list(frame.columns)}")
    values: dict[str, dict[str, float]] = {}
    skipped: list[tuple[str, str]] = []
    for number, row in enumerate(frame.to_dict("records"), start=2):  # header is line 1
        label = f"{path.name} line {number} ({row['id']})"
        status = row.get(STATUS_COLUMN, OK_STATUS)
        if status != OK_STATUS:
            skipped.append((label, f"status: {status}"))
            continue
        for column, name in columns.items():
            value, kind = parse_number(row[column])
            if kind is not Cell.NUMBER or not math.isfinite(value):
                skipped.append((label, f"no value: {column}={row[column]!r}"))
            elif name in positive and value <= 0:
                skipped.append((label, f"non-positive value: {column}={value:g}"))
            else:
                values.setdefault(str(row["id"]), {})[name] = value
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    return LabelTable(path, digest, values, skipped)


def join_labels(dataset: CrystalDataset, labels: LabelTable) -> CrystalDataset:
    """The dataset with each record's labels (matched by id) added to its properties.

    Labels override a property of the same name in the record; records without labels get
    NaN for the table's properties, so `dataset.targets` treats them as missing.
    """
    names = labels.properties
    records = []
    for record in dataset:
        extra = dict.fromkeys(names, math.nan) | labels.values.get(record.id, {})
        records.append(replace(record, properties=record.properties | extra))
    return CrystalDataset(records, dataset.summary)
