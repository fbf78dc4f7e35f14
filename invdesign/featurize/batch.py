"""Collate crystal graphs into one disjoint batch graph of torch tensors."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from invdesign.featurize.graph import CrystalGraph


@dataclass
class GraphBatch:
    """Several crystal graphs as one disconnected graph.

    Attributes:
        atomic_numbers: (n_atoms,) int64.
        edge_index: (2, n_edges) int64, global atom indices (center, neighbour).
        distances: (n_edges,) float32, A.
        angles: (n_edges, n_angular) float32 bond-angle descriptors (no columns if none).
        graph_index: (n_atoms,) int64, which graph each atom belongs to.
        global_features: (n_graphs, n_global) float32 crystal-level features.
        n_graphs: number of graphs in the batch.
    """

    atomic_numbers: torch.Tensor
    edge_index: torch.Tensor
    distances: torch.Tensor
    angles: torch.Tensor
    graph_index: torch.Tensor
    global_features: torch.Tensor
    n_graphs: int

    def to(self, device: torch.device | str) -> GraphBatch:
        return GraphBatch(self.atomic_numbers.to(device), self.edge_index.to(device),
                          self.distances.to(device), self.angles.to(device),
                          self.graph_index.to(device),
                          self.global_features.to(device), self.n_graphs)


def collate(graphs: Sequence[CrystalGraph]) -> GraphBatch:
    """Concatenate graphs, offsetting edge indices by each graph's first atom."""
    n_atoms = np.array([g.n_atoms for g in graphs])
    offsets = np.concatenate([[0], np.cumsum(n_atoms)[:-1]])
    edge_index = np.concatenate(
        [g.edge_index + off for g, off in zip(graphs, offsets, strict=True)], axis=1)
    return GraphBatch(
        atomic_numbers=torch.from_numpy(np.concatenate([g.atomic_numbers for g in graphs])),
        edge_index=torch.from_numpy(edge_index),
        distances=torch.from_numpy(np.concatenate([g.distances for g in graphs])),
        angles=torch.from_numpy(np.concatenate([g.angles for g in graphs])),
        graph_index=torch.from_numpy(np.repeat(np.arange(len(graphs)), n_atoms)),
        global_features=torch.from_numpy(np.vstack([g.global_features for g in graphs])),
        n_graphs=len(graphs),
    )
