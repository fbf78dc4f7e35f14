"""Figures: learning curves and parity plots (matplotlib, no display needed)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def learning_curves(train_loss: Sequence[Sequence[float]], val_mae: Sequence[Sequence[float]],
                    path: str | Path, *, val_label: str = "validation MAE") -> Path:
    """Training loss and validation MAE per epoch, one line per ensemble member."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
    for i, (loss, val) in enumerate(zip(train_loss, val_mae, strict=True)):
        axes[0].plot(loss, lw=1, label=f"member {i}")
        axes[1].plot(val, lw=1)
    axes[0].set(xlabel="epoch", ylabel="training loss (standardised)", yscale="log")
    axes[1].set(xlabel="epoch", ylabel=val_label)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)


def parity(y_true: np.ndarray, y_pred: np.ndarray, y_std: np.ndarray, names: Sequence[str],
           path: str | Path, *, unit: str = "log10(GPa)") -> Path:
    """Predicted vs true per target, coloured by ensemble standard deviation."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(names), figsize=(4.2 * len(names), 4), squeeze=False)
    for j, (ax, name) in enumerate(zip(axes[0], names, strict=True)):
        ok = np.isfinite(y_true[:, j])
        t, p, s = y_true[ok, j], y_pred[ok, j], y_std[ok, j]
        points = ax.scatter(t, p, c=s, s=8, cmap="viridis")
        lo, hi = float(min(t.min(), p.min())), float(max(t.max(), p.max()))
        ax.plot([lo, hi], [lo, hi], "k--", lw=1)
        mae = float(np.mean(np.abs(t - p)))
        ax.set(xlabel=f"true {name} [{unit}]", ylabel=f"predicted [{unit}]",
               title=f"{name}: MAE {mae:.4f} (n={ok.sum()})")
        fig.colorbar(points, ax=ax, label="ensemble std")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)


def ashby(background: dict[str, np.ndarray], candidates: dict[str, np.ndarray],
          pairs: Sequence[tuple[str, str]], path: str | Path, *,
          labels: dict[str, str] | None = None) -> Path:
    """Ashby-style log-log maps (one panel per (x, y) pair): candidates over the training data."""
    plt = _pyplot()
    labels = labels or {}
    fig, axes = plt.subplots(1, len(pairs), figsize=(4.5 * len(pairs), 4), squeeze=False)
    for ax, (x, y) in zip(axes[0], pairs, strict=True):
        for data, style in ((background, dict(s=6, c="0.7", label="training data")),
                            (candidates, dict(s=18, c="tab:red", marker="*",
                                              label="candidates"))):
            xs, ys = np.asarray(data.get(x, []), float), np.asarray(data.get(y, []), float)
            ok = np.isfinite(xs) & np.isfinite(ys) & (xs > 0) & (ys > 0)
            ax.scatter(xs[ok], ys[ok], **style)
        ax.set(xscale="log", yscale="log", xlabel=labels.get(x, x), ylabel=labels.get(y, y))
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)
