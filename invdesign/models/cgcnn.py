"""CGCNN-style crystal graph network (Xie & Grossman 2018) with multi-task heads.

Pure torch: element features and target scalers arrive as tensors and live in buffers, so a state
dict alone restores a working model.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from invdesign.featurize.batch import GraphBatch

GLOBAL_CLAMP = 10.0  # standardised crystal-level features are clipped to +-10 std


@dataclass(frozen=True, kw_only=True)
class CGCNNConfig:
    """Architecture of one surrogate network."""

    n_targets: int
    n_element_features: int
    n_global_features: int = 2
    hidden: int = 64
    n_conv: int = 3
    n_gaussians: int = 40
    n_angular: int = 0  # bond-angle descriptor columns per edge (GraphConfig.angular)
    cutoff: float = 6.0
    head_hidden: int = 128
    dropout: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)


class GaussianExpansion(nn.Module):
    """Expand distances (A) on `n` Gaussians centred evenly on [0, cutoff]."""

    def __init__(self, cutoff: float, n: int):
        super().__init__()
        self.register_buffer("centers", torch.linspace(0.0, cutoff, n))
        self.gamma = 1.0 / (cutoff / (n - 1)) ** 2

    def forward(self, d: torch.Tensor) -> torch.Tensor:
        # tails below exp(-30) are set to exactly 0: left as tiny floats they and their products
        # with gradients become subnormal, which slows every matrix product several-fold on CPU
        arg = -self.gamma * (d[:, None] - self.centers) ** 2
        return torch.exp(arg.clamp(min=-30.0)) * (arg > -30.0)


class GatedConv(nn.Module):
    """CGCNN convolution: h_i += sum_j sigmoid(W_f z_ij) * softplus(W_s z_ij).

    Here z_ij = [h_i, h_j, e_ij] joins center, neighbour and Gaussian-expanded edge features.
    """

    def __init__(self, hidden: int, edge_dim: int):
        super().__init__()
        # W [h_i, h_j, e_ij] split as W_c h_i + W_n h_j + W_e e_ij: node terms are computed once
        # per atom and gathered, which is several times cheaper than a matmul per edge.
        self.node_linear = nn.Linear(hidden, 4 * hidden)
        self.edge_linear = nn.Linear(edge_dim, 2 * hidden, bias=False)
        self.norm_edge = nn.BatchNorm1d(2 * hidden)
        self.norm_node = nn.BatchNorm1d(hidden)
        self.act = nn.Softplus()

    def forward(self, h: torch.Tensor, edge_index: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        center, neighbor = edge_index
        as_center, as_neighbor = self.node_linear(h).chunk(2, dim=1)
        z = self.norm_edge(as_center.index_select(0, center) + as_neighbor.index_select(0, neighbor)
                           + self.edge_linear(e))
        gate, core = z.chunk(2, dim=1)
        messages = torch.sigmoid(gate) * self.act(core)
        return self.act(h + self.norm_node(sum_by_center(messages, center, h.shape[0])))


def sum_by_center(messages: torch.Tensor, center: torch.Tensor, n_atoms: int) -> torch.Tensor:
    """Sum edge messages (E, F) onto their center atoms -> (n_atoms, F).

    Edges arrive sorted by center (see `build_graph` and `collate`); without gradients a segment
    reduction is then several times faster than `index_add_` on CPU.
    """
    if not torch.is_grad_enabled() and (center[1:] >= center[:-1]).all():
        lengths = torch.bincount(center, minlength=n_atoms)
        return torch.segment_reduce(messages, "sum", lengths=lengths, axis=0)
    return torch.zeros(n_atoms, messages.shape[1], dtype=messages.dtype,
                       device=messages.device).index_add_(0, center, messages)


def scatter_mean(x: torch.Tensor, index: torch.Tensor, n: int) -> torch.Tensor:
    """Mean of rows of x (N, F) grouped by index (N,) into (n, F)."""
    total = torch.zeros(n, x.shape[1], dtype=x.dtype, device=x.device).index_add_(0, index, x)
    count = torch.bincount(index, minlength=n).clamp(min=1).to(x.dtype)
    return total / count[:, None]


class CGCNN(nn.Module):
    """Crystal graph network predicting standardised, transformed targets.

    `forward` returns (n_graphs, n_targets) in the standardised space; `predict` undoes the
    standardisation (still in the transformed space, e.g. log10 GPa).
    """

    def __init__(self, config: CGCNNConfig, element_features: torch.Tensor | None = None):
        super().__init__()
        self.config = config
        table = (element_features if element_features is not None
                 else torch.zeros(101, config.n_element_features))
        self.register_buffer("element_features", table.float())
        self.register_buffer("target_mean", torch.zeros(config.n_targets))
        self.register_buffer("target_std", torch.ones(config.n_targets))
        self.register_buffer("global_mean", torch.zeros(config.n_global_features))
        self.register_buffer("global_std", torch.ones(config.n_global_features))
        self.embed = nn.Linear(config.n_element_features, config.hidden)
        self.expand = GaussianExpansion(config.cutoff, config.n_gaussians)
        edge_dim = config.n_gaussians + config.n_angular
        self.convs = nn.ModuleList(GatedConv(config.hidden, edge_dim) for _ in range(config.n_conv))
        self.head = nn.Sequential(
            nn.Linear(config.hidden + config.n_global_features, config.head_hidden), nn.Softplus(),
            nn.Dropout(config.dropout),
            nn.Linear(config.head_hidden, config.head_hidden), nn.Softplus(),
            nn.Linear(config.head_hidden, config.n_targets),
        )

    def set_scalers(self, target_mean, target_std, global_mean, global_std) -> None:
        """Store normalisation statistics (they travel with the state dict)."""
        for name, value in [("target_mean", target_mean), ("target_std", target_std),
                            ("global_mean", global_mean), ("global_std", global_std)]:
            getattr(self, name).copy_(torch.as_tensor(value, dtype=torch.float32))

    def embed_graph(self, batch: GraphBatch, expanded: torch.Tensor | None = None
                    ) -> torch.Tensor:
        """Pooled crystal representation (n_graphs, hidden) after the convolutions.

        `expanded`: the batch's edge features when already computed (ensemble members with one
        configuration share them)."""
        h = self.embed(self.element_features[batch.atomic_numbers])
        e = self.edge_features(batch) if expanded is None else expanded
        for conv in self.convs:
            h = conv(h, batch.edge_index, e)
        return scatter_mean(h, batch.graph_index, batch.n_graphs)

    def edge_features(self, batch: GraphBatch) -> torch.Tensor:
        """Gaussian-expanded distances, joined by the bond-angle descriptors if configured."""
        e = self.expand(batch.distances)
        if self.config.n_angular:
            if batch.angles.shape[1] != self.config.n_angular:
                raise ValueError(f"the model expects {self.config.n_angular} bond-angle columns "
                                 f"per edge, the graphs carry {batch.angles.shape[1]}")
            e = torch.cat([e, batch.angles], dim=1)
        return e

    def forward(self, batch: GraphBatch, expanded: torch.Tensor | None = None) -> torch.Tensor:
        pooled = self.embed_graph(batch, expanded)
        glob = (batch.global_features - self.global_mean) / self.global_std
        glob = glob.clamp(-GLOBAL_CLAMP, GLOBAL_CLAMP)  # far outside training: stay bounded
        return self.head(torch.cat([pooled, glob], dim=1))

    def predict(self, batch: GraphBatch, expanded: torch.Tensor | None = None) -> torch.Tensor:
        """Targets in the transformed space (n_graphs, n_targets)."""
        return self(batch, expanded) * self.target_std + self.target_mean

    def freeze_convolutions(self) -> None:
        """Freeze embedding and convolutions for transfer learning (heads stay trainable)."""
        for module in (self.embed, self.convs):
            for p in module.parameters():
                p.requires_grad_(False)
