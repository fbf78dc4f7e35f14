"""Samples saved before their checks, so that an interrupted `invdesign sample` resumes.

Sampling (decoding and denoising) can take minutes; the checks that follow can take as long.
`save_samples` writes the drawn crystals losslessly (`invdesign.data.archive`) with the
arguments that determined them; `load_samples` returns them only for identical arguments and an
unchanged checkpoint, so a rerun of the same command skips straight to the checks. The archive
keeps the samples' ids, and `load_dataset` reads it, so `invdesign validate`, `verify` and
`evaluate generation` take it too.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from pymatgen.core import Structure

from invdesign.data.archive import read_structures, write_structures
from invdesign.design.candidates import SAMPLE_PREFIX, candidate_id, index_from_id

SAMPLES_FILE = "samples.npz"
META_FILE = "samples.json"


def checkpoint_fingerprint(folder: str | Path) -> str:
    """Hash of the name, size and modification time of every file in a checkpoint folder:
    changes when any of its weights, priors or cards is rewritten."""
    digest = hashlib.sha256()
    for path in sorted(p for p in Path(folder).iterdir() if p.is_file()):
        stat = path.stat()
        digest.update(f"{path.name}:{stat.st_size}:{stat.st_mtime_ns};".encode())
    return digest.hexdigest()


def save_samples(folder: str | Path, key: Mapping[str, Any],
                 structures: Sequence[Structure | None], requested: np.ndarray) -> Path:
    """Write `structures` (None where decoding failed) and the requested conditions (n, C)
    under `folder`, tagged with `key` (the arguments that determined them, JSON-able)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    decoded = [i for i, s in enumerate(structures) if s is not None]
    tmp = folder / f".{SAMPLES_FILE}"
    write_structures(tmp, [structures[i] for i in decoded],
                     ids=[candidate_id(SAMPLE_PREFIX, i) for i in decoded])
    tmp.replace(folder / SAMPLES_FILE)
    meta = {"key": dict(key), "n": len(structures),
            "requested": np.asarray(requested, dtype=float).tolist()}
    (folder / META_FILE).write_text(json.dumps(meta))  # last: the archive is complete
    return folder / SAMPLES_FILE


def load_samples(folder: str | Path, key: Mapping[str, Any]
                 ) -> tuple[list[Structure | None], np.ndarray] | None:
    """(structures, requested conditions) saved under `folder` with the same `key`, or None
    when there are none, they were drawn with other arguments, or the files are unreadable."""
    folder = Path(folder)
    try:
        meta = json.loads((folder / META_FILE).read_text())
        if meta.get("key") != json.loads(json.dumps(dict(key))):
            return None
        stored, ids = read_structures(folder / SAMPLES_FILE)
        structures: list[Structure | None] = [None] * int(meta["n"])
        for name, s in zip(ids, stored, strict=True):
            structures[index_from_id(name)] = s
    except (OSError, ValueError, KeyError, IndexError):
        return None
    requested = np.asarray(meta["requested"], dtype=float).reshape(len(structures), -1)
    return structures, requested


def clear_samples(folder: str | Path) -> None:
    """Remove saved samples (once the run they belong to has written its results)."""
    for name in (META_FILE, SAMPLES_FILE):
        (Path(folder) / name).unlink(missing_ok=True)
