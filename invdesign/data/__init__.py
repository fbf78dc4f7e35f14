"""Crystal data layer: read datasets from files into validated records, and split them."""

from __future__ import annotations

from invdesign.data.dataset import CrystalDataset, CrystalRecord, LoadSummary
from invdesign.data.paths import shared_data_dir
from invdesign.data.readers import load_dataset
from invdesign.data.splits import Split, composition_split, kfold, random_split

__all__ = [
    "CrystalDataset",
    "CrystalRecord",
    "LoadSummary",
    "Split",
    "composition_split",
    "kfold",
    "load_dataset",
    "random_split",
    "shared_data_dir",
]
