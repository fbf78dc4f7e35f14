"""Checkpoint folders: `weights.pt` (tensors and plain data, loads with weights_only=True) plus a
human-readable `card.json` (architecture, normalisation, data provenance, split, metrics, version).
"""

from __future__ import annotations

import json
import logging
import math
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch

logger = logging.getLogger(__name__)

CHECKPOINT_FORMAT = 1
WEIGHTS_FILE = "weights.pt"
CARD_FILE = "card.json"


def _package_version() -> str:
    from invdesign import __version__

    return __version__


def save_checkpoint(folder: str | Path, *, kind: str, config: dict[str, Any],
                    state_dicts: list[dict[str, torch.Tensor]], meta: dict[str, Any]) -> Path:
    """Write a checkpoint folder atomically (temporary files renamed into place)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    meta = _plain({"version": _package_version(),
                   "created": datetime.now(timezone.utc).isoformat(timespec="seconds"), **meta})
    payload = {"format": CHECKPOINT_FORMAT, "kind": kind, "config": config,
               "state_dicts": state_dicts, "meta": meta}
    tmp = folder / (WEIGHTS_FILE + ".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, folder / WEIGHTS_FILE)
    _write_card(folder, {"format": CHECKPOINT_FORMAT, "kind": kind, "config": config,
                         "meta": meta})
    return folder


def update_card_meta(folder: str | Path, meta: dict[str, Any]) -> Path:
    """Replace the metadata of a checkpoint's `card.json` (its record: `load_checkpoint`
    reads it from there), leaving the weights file untouched; for figures measured after
    training."""
    path = Path(folder) / CARD_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{folder} holds no checkpoint card to update; save the "
                                "checkpoint with its weights first")
    card = json.loads(path.read_text())
    card["meta"] = _plain(meta)
    _write_card(Path(folder), card)
    return path


def _write_card(folder: Path, card: dict[str, Any]) -> None:
    tmp = folder / (CARD_FILE + ".tmp")
    tmp.write_text(json.dumps(_json_safe(card), indent=2, default=str, allow_nan=False) + "\n")
    os.replace(tmp, folder / CARD_FILE)


def _card_meta(folder: Path, fallback: dict[str, Any]) -> dict[str, Any]:
    """The metadata of `card.json`, which is the checkpoint's record: a card updated after
    training (a schedule chosen by a benchmark, provenance) must not be shadowed by the copy
    saved beside the weights. Falls back to that copy when the card is missing or unreadable."""
    path = folder / CARD_FILE
    if not path.is_file():
        return fallback
    try:
        meta = json.loads(path.read_text())["meta"]
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        logger.warning("%s is unreadable (%s); using the metadata saved with the weights",
                       path, exc)
        return fallback
    if not isinstance(meta, dict):
        logger.warning("%s: 'meta' is not an object; using the metadata saved with the weights",
                       path)
        return fallback
    return meta


def _plain(value: Any) -> Any:
    """Numpy scalars and arrays in `value` as Python numbers and lists: `weights_only`
    loading refuses numpy objects, so one stray np.float64 in the metadata would make the
    checkpoint unloadable."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_plain(v) for v in value)
    return value


def _json_safe(value: Any) -> Any:
    """Replace NaN/inf floats by None so the card is strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def load_checkpoint(folder: str | Path, *, kind: str | None = None) -> dict[str, Any]:
    """Read a checkpoint folder with `weights_only=True`; warn when written by another version."""
    folder = Path(folder)
    path = folder / WEIGHTS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {folder}: {WEIGHTS_FILE} is missing")
    payload = torch.load(path, map_location="cpu", weights_only=True)
    if payload.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path}: checkpoint format {payload.get('format')!r} is not supported "
                         f"(expected {CHECKPOINT_FORMAT})")
    if kind is not None and payload.get("kind") != kind:
        raise ValueError(f"{path}: checkpoint kind is {payload.get('kind')!r}, expected {kind!r}")
    payload["meta"] = _card_meta(folder, payload.get("meta", {}))
    saved = payload["meta"].get("version")
    if saved != _package_version():
        logger.warning("%s was written by invdesign %s; this is %s", path, saved,
                       _package_version())
    return payload
