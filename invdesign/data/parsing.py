"""Turn raw row fields (CIF text, structure dicts, ASE Atoms, property cells) into typed values.

Parsers raise `RowError` with a short reason ("category: detail") for a bad row; the reader
records it in the load summary and carries on.
"""

from __future__ import annotations

import ast
import json
import math
import re
import warnings
from collections.abc import Iterable, Mapping
from enum import Enum
from pathlib import Path
from typing import Any

import numpy as np
from pymatgen.core import Structure
from pymatgen.io.cif import CifParser

# Cell values that mean "no value" rather than "a value that is not a number".
MISSING_TOKENS = frozenset({"", "na", "n/a", "none", "null", "-"})
_UNKNOWN_ELEMENT = re.compile(r"'([^']*)' is not a valid Element")
# numpy>=2 scalar reprs inside a Python-repr dict, e.g. "np.float64(1.5)" -> "1.5"
_NUMPY_SCALAR = re.compile(r"\b(?:np|numpy)\.(?:float|int|uint)\d*\(([^()]*)\)")


class RowError(ValueError):
    """A row that cannot become a record; `reason` reads "category: detail"."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class Cell(Enum):
    """How a raw property cell was read."""

    NUMBER = "number"  # a number (possibly NaN/inf when the source wrote one)
    MISSING = "missing"  # absent, None or an empty/NA token
    TEXT = "text"  # a string that is not a number


def parse_number(raw: object) -> tuple[float, Cell]:
    """Read one property cell.

    Returns:
        (value, kind): the float (NaN unless kind is `Cell.NUMBER`) and how it was read.
    """
    if raw is None:
        return math.nan, Cell.MISSING
    if isinstance(raw, (int, float, np.integer, np.floating)):
        return float(raw), Cell.NUMBER
    if isinstance(raw, str):
        text = raw.strip()
        if text.lower() in MISSING_TOKENS:
            return math.nan, Cell.MISSING
        try:
            return float(text), Cell.NUMBER
        except ValueError:
            return math.nan, Cell.TEXT
    return math.nan, Cell.TEXT


def numeric_fields(rows: Iterable[Mapping[str, object]], *, exclude: Iterable[str]) -> list[str]:
    """Fields whose present values are mostly numbers (more than half), in first-seen order."""
    skip = set(exclude)
    counts: dict[str, list[int]] = {}
    for row in rows:
        for key, raw in row.items():
            if key in skip or isinstance(raw, bool):
                continue
            kind = parse_number(raw)[1]
            if kind is not Cell.MISSING:
                tally = counts.setdefault(key, [0, 0])
                tally[kind is Cell.NUMBER] += 1
    return [key for key, (n_text, n_num) in counts.items() if n_num > n_text]


def reason_from_exception(exc: Exception) -> str:
    """Map a parser exception to a short "category: detail" reason."""
    if isinstance(exc, RowError):
        return exc.reason
    message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    match = _UNKNOWN_ELEMENT.search(message)
    if match:
        return f"unknown element: {match.group(1)}"
    return f"malformed structure: {message[:200]}"


def structures_from_cif(text: str) -> list[Structure]:
    """All structures in a CIF string (conventional cell as written, no symmetrisation).

    Raises:
        RowError: when no structure can be parsed; the first parser warning is the detail.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            structures = CifParser.from_str(text).parse_structures(primitive=False)
        except Exception as exc:
            hints = [str(w.message).splitlines()[0] for w in caught if str(w.message).strip()]
            detail = f"{exc}" + (f" ({hints[0][:120]})" if hints else "")
            raise RowError(reason_from_exception(ValueError(detail))) from exc
    if not structures:
        raise RowError("malformed structure: CIF holds no structure")
    return structures


def structure_from_cif(text: str) -> Structure:
    """The first structure in a CIF string (see `structures_from_cif`)."""
    return structures_from_cif(text)[0]


def structure_from_object(obj: Any) -> Structure:
    """A Structure from a pymatgen dict, a JSON/Python-repr string of one, CIF text or a Structure.

    Raises:
        RowError: when `obj` is none of these or does not parse.
    """
    if isinstance(obj, Structure):
        return obj
    if isinstance(obj, str):
        if "_cell_length_a" in obj:
            return structure_from_cif(obj)
        obj = _dict_from_string(obj)
    if not isinstance(obj, Mapping):
        raise RowError(f"malformed structure: expected a dict, got {type(obj).__name__}")
    if "lattice" not in obj or "sites" not in obj:
        raise RowError("malformed structure: dict has no 'lattice' or 'sites'")
    try:
        return Structure.from_dict(obj)
    except Exception as exc:
        raise RowError(reason_from_exception(exc)) from exc


def _dict_from_string(text: str) -> object:
    """Decode a JSON string, falling back to a Python literal (single-quoted repr)."""
    try:
        return json.loads(text)
    except ValueError:
        pass
    try:
        return ast.literal_eval(_NUMPY_SCALAR.sub(r"\1", text.strip()))
    except (ValueError, SyntaxError, MemoryError, RecursionError) as exc:
        raise RowError("malformed structure: string is neither JSON nor a Python dict") from exc


def structure_from_atoms(atoms: Any) -> Structure:
    """A Structure from an ASE `Atoms` with a full 3D cell.

    Raises:
        RowError: when the cell is not 3D or the conversion fails.
    """
    from pymatgen.io.ase import AseAtomsAdaptor

    if len(atoms) and atoms.cell.rank < 3:
        raise RowError(f"bad lattice: no 3D periodic cell (cell rank {atoms.cell.rank})")
    try:
        return AseAtomsAdaptor.get_structure(atoms)
    except Exception as exc:
        raise RowError(reason_from_exception(exc)) from exc


def structures_from_file(path: Path) -> list[Structure]:
    """Structures in one CIF/POSCAR/CONTCAR/*.vasp file.

    Raises:
        RowError: when the file does not parse.
    """
    if path.suffix.lower() == ".cif":
        try:
            text = path.read_text(errors="replace")
        except OSError as exc:
            raise RowError(f"unreadable file: {exc}") from exc
        return structures_from_cif(text)
    from pymatgen.io.vasp import Poscar

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return [Poscar.from_file(path, check_for_potcar=False).structure]
        except Exception as exc:
            raise RowError(reason_from_exception(exc)) from exc
