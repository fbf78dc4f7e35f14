"""CDVAE's reconstruction metrics: match rate and normalised RMS displacement.

As CDVAE's ``scripts/compute_metrics.py::RecEval``: each prediction is compared with its
ground truth by ``StructureMatcher(stol=0.5, angle_tol=10, ltol=0.3)`` (pymatgen's other
defaults: primitive cells, scaled volumes, no supercells) through
``get_rms_dist(pred, gt)``, whose first value is the RMS site displacement normalised by
``(volume / n_sites) ** (1 / 3)``. A prediction is a match when that value exists; predictions
that are None, invalid or make the matcher raise are misses. ``match_rate`` = matches / all
pairs; ``rmse`` = mean normalised RMS over the matches (NaN when nothing matched).

Validity (``require_valid``) is CDVAE's: structural (distinct sites >= 0.5 A apart, volume
>= 0.1 A^3) and compositional (SMACT). CDVAE also marked a prediction invalid when its
CrystalNN fingerprint failed; that check is skipped here (it costs ~50 ms per structure and
fails essentially never on a structure that passes the distance check).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
from pymatgen.core import Structure

from invdesign.validity import MatchSettings, cdvae_structure_valid, composition_validity

logger = logging.getLogger(__name__)


def cdvae_valid(structure: Structure) -> bool:
    """CDVAE's validity: structurally and compositionally valid (never raises)."""
    try:
        return cdvae_structure_valid(structure) and composition_validity(structure).valid
    except Exception as exc:  # an unusable structure is invalid, never fatal
        logger.debug("validity check failed: %s", exc)
        return False


def _progress(items: Iterable[Any], total: int, progress: bool) -> Iterable[Any]:
    if not progress:
        return items
    from rich.progress import track

    return track(items, description="Matching", total=total)


def rms_distances(pred: Sequence[Structure | None], gt: Sequence[Structure], *,
                  require_valid: bool = True, settings: MatchSettings | None = None,
                  progress: bool = False) -> np.ndarray:
    """Normalised RMS displacement per pair, NaN where the pair does not match.

    Args:
        pred: Predicted (reconstructed) structures; None for a failed prediction.
        gt: Ground-truth structures, same length and order.
        require_valid: Count invalid predictions as misses, as CDVAE does.
        settings: Matcher tolerances; CDVAE's (ltol=0.3, stol=0.5, angle_tol=10) by default.
        progress: Show a progress bar (rich).

    Returns:
        Array of shape (n,): ``get_rms_dist(pred, gt)[0]`` or NaN.

    Raises:
        ValueError: If `pred` and `gt` differ in length.
    """
    if len(pred) != len(gt):
        raise ValueError(f"got {len(pred)} predictions for {len(gt)} ground-truth structures")
    matcher = (settings or MatchSettings()).matcher()
    out = np.full(len(pred), np.nan)
    pairs = _progress(enumerate(zip(pred, gt, strict=True)), len(pred), progress)
    for i, (p, g) in pairs:
        if p is None or (require_valid and not cdvae_valid(p)):
            continue
        try:
            rms = matcher.get_rms_dist(p, g)
        except Exception as exc:  # CDVAE counts a failing comparison as a miss
            logger.debug("StructureMatcher failed on pair %d: %s", i, exc)
            continue
        if rms is not None:
            out[i] = float(rms[0])
    return out


def match_rate_and_rmse(pred: Sequence[Structure | None], gt: Sequence[Structure], *,
                        require_valid: bool = True, settings: MatchSettings | None = None,
                        progress: bool = False) -> dict[str, float]:
    """CDVAE's reconstruction match rate and mean normalised RMSE.

    Arguments as in `rms_distances`.

    Returns:
        ``match_rate`` (matches / pairs), ``rmse`` (mean over matches, NaN if none), ``n``,
        ``n_matched``.

    Raises:
        ValueError: If `pred` and `gt` differ in length or are empty.
    """
    if len(gt) == 0:
        raise ValueError("no structures to compare")
    rms = rms_distances(pred, gt, require_valid=require_valid, settings=settings,
                        progress=progress)
    matched = ~np.isnan(rms)
    return {
        "match_rate": float(matched.mean()),
        "rmse": float(rms[matched].mean()) if matched.any() else float("nan"),
        "n": len(rms),
        "n_matched": int(matched.sum()),
    }
