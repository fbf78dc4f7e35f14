"""Train/validation/test splits: random, grouped by reduced formula, and k-fold.

Splits are index arrays into a dataset, deterministic for a seed, and serialise to JSON (for
checkpoint cards) with `Split.to_dict` / `Split.from_dict`.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
from pymatgen.core import Composition, Structure

from invdesign.data.dataset import CrystalDataset, CrystalRecord

Fractions = tuple[float, float, float]
_PARTS = ("train", "val", "test")


@dataclass(frozen=True, eq=False)
class Split:
    """Index arrays of a train/val/test split and how it was made.

    Attributes:
        train, val, test: Sorted, disjoint int64 index arrays (read-only).
        seed: Random seed used.
        method: "random" or "composition" (grouped by reduced formula).
        fractions: Requested (train, val, test) fractions.
    """

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    seed: int
    method: str
    fractions: Fractions

    def __post_init__(self) -> None:
        for name in _PARTS:
            arr = np.array(sorted(int(i) for i in getattr(self, name)), dtype=np.int64)
            arr.flags.writeable = False
            object.__setattr__(self, name, arr)
        object.__setattr__(self, "fractions", tuple(float(f) for f in self.fractions))

    @property
    def sizes(self) -> tuple[int, int, int]:
        """Number of indices in (train, val, test)."""
        return len(self.train), len(self.val), len(self.test)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready description (plain ints and floats)."""
        out: dict[str, Any] = {"method": self.method, "seed": self.seed,
                               "fractions": list(self.fractions), "sizes": list(self.sizes)}
        out.update({name: getattr(self, name).tolist() for name in _PARTS})
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Split:
        """Inverse of `to_dict` (extra keys such as "sizes" are ignored)."""
        return cls(train=np.asarray(data["train"]), val=np.asarray(data["val"]),
                   test=np.asarray(data["test"]), seed=int(data["seed"]),
                   method=str(data["method"]), fractions=tuple(data["fractions"]))

    def subsets(self, dataset: CrystalDataset) -> tuple[CrystalDataset, ...]:
        """The (train, val, test) sub-datasets of `dataset`."""
        return tuple(dataset.subset(getattr(self, name)) for name in _PARTS)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Split) and self.to_dict() == other.to_dict()

    __hash__ = None  # type: ignore[assignment]


def check_fractions(fractions: Sequence[float]) -> Fractions:
    """Validate (train, val, test) fractions: three finite, non-negative numbers summing to 1."""
    values = tuple(float(f) for f in fractions)
    if len(values) != 3:
        raise ValueError(f"fractions must be (train, val, test), got {fractions!r}")
    if not all(math.isfinite(f) and f >= 0 for f in values):
        raise ValueError(f"fractions must be finite and non-negative, got {fractions!r}")
    if abs(sum(values) - 1.0) > 1e-6:
        raise ValueError(f"fractions must sum to 1, got {fractions!r} (sum {sum(values):.6g})")
    return values  # type: ignore[return-value]


def part_sizes(n: int, fractions: Fractions) -> np.ndarray:
    """Integer sizes summing to `n`, closest to `n * fractions` (largest remainder)."""
    exact = n * np.asarray(fractions)
    sizes = np.floor(exact).astype(np.int64)
    order = np.argsort(-(exact - sizes), kind="stable")
    sizes[order[: n - int(sizes.sum())]] += 1
    return sizes


def _check_n(n: object) -> int:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
        raise ValueError(f"n must be a non-negative integer, got {n!r}")
    return int(n)


def random_split(n: int, fractions: Sequence[float] = (0.8, 0.1, 0.1), *,
                 seed: int = 0) -> Split:
    """Shuffle `range(n)` with `seed` and cut it into train/val/test parts."""
    n = _check_n(n)
    fracs = check_fractions(fractions)
    perm = np.random.default_rng(seed).permutation(n)
    cuts = np.cumsum(part_sizes(n, fracs))[:2]
    train, val, test = np.split(perm, cuts)
    return Split(train=train, val=val, test=test, seed=seed, method="random", fractions=fracs)


@lru_cache(maxsize=65536)
def _reduced_formula(formula: str) -> str:
    try:
        return Composition(formula).reduced_formula
    except Exception:  # not a formula: group by the raw label
        return formula


def group_keys(items: CrystalDataset | Sequence[Any]) -> list[Hashable]:
    """Group label per item: the reduced formula of structures/records/formula strings.

    Other hashable labels (e.g. ints) are used as they are.
    """
    if isinstance(items, (int, np.integer)):
        raise ValueError("expected a dataset, structures or formulas, got an integer")
    keys: list[Hashable] = []
    for item in items:
        if isinstance(item, CrystalRecord):
            item = item.structure
        if isinstance(item, Structure):
            keys.append(item.composition.reduced_formula)
        elif isinstance(item, str):
            keys.append(_reduced_formula(item))
        else:
            keys.append(item.item() if isinstance(item, np.generic) else item)
    return keys


def _grouped(keys: Sequence[Hashable], seed: int) -> list[np.ndarray]:
    """Index arrays per group, groups in a seeded random order (independent of input order)."""
    groups: dict[Hashable, list[int]] = {}
    for i, key in enumerate(keys):
        groups.setdefault(key, []).append(i)
    names = sorted(groups, key=repr)
    order = np.random.default_rng(seed).permutation(len(names))
    return [np.asarray(groups[names[j]], dtype=np.int64) for j in order]


def composition_split(dataset_or_formulas: CrystalDataset | Sequence[Any],
                      fractions: Sequence[float] = (0.8, 0.1, 0.1), *, seed: int = 0) -> Split:
    """Split so that no reduced formula appears in two parts.

    Groups go, in seeded random order, to the part furthest below its target size, so part sizes
    match `fractions` up to the size of one group.

    Args:
        dataset_or_formulas: A `CrystalDataset`, or a sequence of structures, records, formula
            strings (reduced, so "Na2Cl2" groups with "NaCl") or other group labels.
        fractions: (train, val, test) fractions of items.
        seed: Random seed.
    """
    fracs = check_fractions(fractions)
    keys = group_keys(dataset_or_formulas)
    targets = part_sizes(len(keys), fracs).astype(float)
    targets[np.asarray(fracs) == 0] = -np.inf  # a zero-fraction part never gets a group
    filled = np.zeros(3)
    parts: list[list[np.ndarray]] = [[], [], []]
    for members in _grouped(keys, seed):
        j = int(np.argmax(targets - filled))
        parts[j].append(members)
        filled[j] += len(members)
    train, val, test = (np.concatenate(p) if p else np.zeros(0, np.int64) for p in parts)
    return Split(train=train, val=val, test=test, seed=seed, method="composition",
                 fractions=fracs)


def kfold(n_or_groups: int | CrystalDataset | Sequence[Any], k: int = 5, *,
          seed: int = 0) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """K-fold cross-validation: (train_idx, val_idx) pairs, each index validated exactly once.

    Args:
        n_or_groups: Number of items, or a dataset / structures / formulas / group labels to
            keep groups (reduced formulas) within one fold.
        k: Number of folds (2 <= k <= number of items or groups).
        seed: Random seed.

    Returns:
        An iterator over k sorted (train_idx, val_idx) int64 array pairs.
    """
    if isinstance(n_or_groups, (int, np.integer)) and not isinstance(n_or_groups, bool):
        n = _check_n(n_or_groups)
        units = [np.asarray([i]) for i in np.random.default_rng(seed).permutation(n)]
    else:
        keys = group_keys(n_or_groups)
        n = len(keys)
        units = _grouped(keys, seed)
        units.sort(key=len, reverse=True)  # stable: big groups first, ties in seeded order
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 2 <= k <= len(units):
        raise ValueError(f"k must be an integer with 2 <= k <= {len(units)} "
                         f"(number of items or groups), got {k!r}")
    fold_of = np.empty(n, dtype=np.int64)
    sizes = np.zeros(k, dtype=np.int64)
    for members in units:
        j = int(np.argmin(sizes))
        fold_of[members] = j
        sizes[j] += len(members)
    everything = np.arange(n)
    return iter([(everything[fold_of != j], everything[fold_of == j]) for j in range(k)])
