"""Crystal data layer: read datasets from files into validated records, and split them."""

from __future__ import annotations

from invdesign.data.dataset import CrystalDataset, CrystalRecord, LoadSummary
from invdesign.data.labels import LabelTable, join_labels, read_labels
from invdesign.data.paths import shared_data_dir, shared_mp_elasticity
from invdesign.data.readers import load_dataset
from invdesign.data.splits import Split, composition_split, kfold, random_split

__all__ = [
    "CrystalDataset",
    "CrystalRecord",
    "LabelTable",
    "LoadSummary",
    "Split",
    "composition_split",
    "join_labels",
    "kfold",
    "load_dataset",
    "random_split",
    "read_labels",
    "shared_data_dir",
    "shared_mp_elasticity",
]
