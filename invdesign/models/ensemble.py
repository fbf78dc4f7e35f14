"""Deep ensemble of crystal graph networks: member predictions share one collated batch."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from invdesign.featurize.batch import collate
from invdesign.featurize.graph import CrystalGraph
from invdesign.models.cgcnn import CGCNN, CGCNNConfig


class Ensemble(nn.Module):
    """Members with one architecture and different weights."""

    def __init__(self, config: CGCNNConfig, state_dicts: Sequence[dict[str, torch.Tensor]]):
        super().__init__()
        if not state_dicts:
            raise ValueError("an ensemble needs at least one member state dict")
        self.config = config
        self.members = nn.ModuleList(CGCNN(config) for _ in state_dicts)
        for member, state in zip(self.members, state_dicts, strict=True):
            member.load_state_dict(state)
        self.eval()

    @torch.inference_mode()
    def predict(self, graphs: Sequence[CrystalGraph], batch_size: int = 64) -> np.ndarray:
        """Predictions in the transformed space, shape (n_members, n_graphs, n_targets)."""
        out = np.zeros((len(self.members), len(graphs), self.config.n_targets), dtype=np.float32)
        for start in range(0, len(graphs), batch_size):
            batch = collate(graphs[start:start + batch_size])
            expanded = self.members[0].edge_features(batch)  # same for every member
            for m, member in enumerate(self.members):
                out[m, start:start + batch.n_graphs] = member.predict(batch, expanded).numpy()
        return out
