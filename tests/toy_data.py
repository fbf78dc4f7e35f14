"""A tiny elastic-moduli JSON dataset written in code, shared by the surrogate and CLI tests."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from pymatgen.core import Structure

SCALES = (0.94, 0.98, 1.02, 1.06)  # volume factors applied to every prototype


def toy_records(prototypes: Sequence[Structure]) -> list[dict]:
    """One record per (prototype, volume scale): K = 30 * density, G = 12 * density (GPa).

    The last record has no shear modulus (the field is omitted, i.e. a missing label).
    """
    records = []
    for i, proto in enumerate(prototypes):
        for j, scale in enumerate(SCALES):
            s = proto.copy()
            s.scale_lattice(proto.volume * scale)
            records.append({"mp_id": f"toy-{i}-{j}", "structure": s.as_dict(),
                            "bulk_modulus_vrh": 30.0 * s.density,
                            "shear_modulus_vrh": 12.0 * s.density})
    del records[-1]["shear_modulus_vrh"]
    return records


def write_toy_dataset(path: Path, prototypes: Sequence[Structure]) -> Path:
    """Write `toy_records(prototypes)` as a JSON list to `path` and return it."""
    path.write_text(json.dumps(toy_records(prototypes)))
    return path
