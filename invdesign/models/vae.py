"""Property-conditioned crystal VAE.

Encoder: the surrogate's gated graph convolutions (E(3)-invariant, periodic) plus the composition
and the cell's global features -> mean and log-variance of z. Decoder: one shot from (z, y) to the
number of atoms, Niggli lattice parameters, one element per atom slot and fractional coordinates
(slot 0 sits at the origin). Conditioning enters twice: y is a decoder input and sets the mean of
a learned conditional prior p(z | y) = N(W y, I); a property head predicts y from z for
latent-space optimisation and fills y in for unlabelled rows (semi-supervised training).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from invdesign.featurize.batch import GraphBatch
from invdesign.models.cgcnn import GLOBAL_CLAMP, GatedConv, GaussianExpansion, scatter_mean

N_LATTICE = 6  # log a, log b, log c, alpha, beta, gamma (standardised)


@dataclass(frozen=True, kw_only=True)
class VAEConfig:
    """Architecture of a crystal VAE."""

    elements: tuple[int, ...]  # atomic numbers the decoder can place (its vocabulary)
    max_atoms: int
    n_element_features: int
    n_global_features: int
    n_conditions: int = 0
    latent: int = 64
    hidden: int = 128
    n_conv: int = 3
    n_gaussians: int = 40
    cutoff: float = 6.0
    decoder_hidden: int = 512
    max_species: int = 0  # classes of the number-of-elements head (0: no head)

    def to_dict(self) -> dict:
        """Plain JSON types (the vocabulary as a list), identical in weights.pt and card.json."""
        return {**asdict(self), "elements": list(self.elements)}

    @classmethod
    def from_dict(cls, data: dict) -> VAEConfig:
        return cls(**{**data, "elements": tuple(data["elements"])})


@dataclass
class DecoderOutput:
    """Raw decoder outputs for a batch of B latent vectors and M = max_atoms slots."""

    count_logits: torch.Tensor  # (B, V, M + 1): logit of each element's count 0..M
    lattice: torch.Tensor  # (B, 6) standardised lattice features
    coords: torch.Tensor  # (B, M, 3) fractional, unwrapped; slot 0 is the origin
    species_logits: torch.Tensor | None = None  # (B, S): logit of 1..S distinct elements


def mlp(sizes: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(len(sizes) - 1):
        layers.append(nn.Linear(sizes[i], sizes[i + 1]))
        if i < len(sizes) - 2:
            layers += [nn.LayerNorm(sizes[i + 1]), nn.SiLU()]
    return nn.Sequential(*layers)


class CrystalVAE(nn.Module):
    """Graph encoder -> z -> one-shot crystal decoder, with property head and conditional prior."""

    def __init__(self, config: VAEConfig, element_features: torch.Tensor | None = None):
        super().__init__()
        self.config = config
        c = config
        vocab = torch.tensor(c.elements, dtype=torch.long)
        lookup = torch.full((101,), len(c.elements), dtype=torch.long)  # last column: other
        lookup[vocab] = torch.arange(len(c.elements))
        table = (element_features if element_features is not None
                 else torch.zeros(101, c.n_element_features))
        self.register_buffer("element_features", table.float())
        self.register_buffer("vocab", vocab)
        self.register_buffer("vocab_index", lookup)
        for name, size in [("global", c.n_global_features), ("lattice", N_LATTICE),
                           ("condition", c.n_conditions)]:
            self.register_buffer(f"{name}_mean", torch.zeros(size))
            self.register_buffer(f"{name}_std", torch.ones(size))
        # standardised conditions of the training rows, drawn from for unconditional sampling
        self.register_buffer("condition_bank", torch.zeros(0, c.n_conditions))

        self.embed = nn.Linear(c.n_element_features, c.hidden)
        self.expand = GaussianExpansion(c.cutoff, c.n_gaussians)
        self.convs = nn.ModuleList(GatedConv(c.hidden, c.n_gaussians) for _ in range(c.n_conv))
        n_vocab = len(c.elements)
        encoder_in = c.hidden + c.n_global_features + n_vocab + 1 + c.max_atoms
        self.encoder_head = mlp([encoder_in, 2 * c.hidden, 2 * c.hidden, 2 * c.latent])
        last = self.encoder_head[-1]
        with torch.no_grad():  # start nearly deterministic: small posterior noise
            last.weight[c.latent:].mul_(0.01)
            last.bias[c.latent:].fill_(-6.0)
        self.property_head = (mlp([c.latent, c.hidden, c.hidden, c.n_conditions])
                              if c.n_conditions else None)
        self.prior_head = nn.Linear(c.n_conditions, c.latent) if c.n_conditions else None
        if self.prior_head is not None:
            nn.init.zeros_(self.prior_head.weight)
            nn.init.zeros_(self.prior_head.bias)
        h = c.decoder_hidden
        self.decoder = nn.Sequential(mlp([c.latent + c.n_conditions, h, h, h]), nn.SiLU())
        self.count_head = nn.Linear(h, n_vocab * (c.max_atoms + 1))
        self.lattice_head = nn.Linear(h, N_LATTICE)
        self.coord_head = nn.Linear(h, c.max_atoms * 3)
        self.species_head = nn.Linear(h, c.max_species) if c.max_species else None

    @property
    def n_vocab(self) -> int:
        return len(self.config.elements)

    def set_scalers(self, **stats: torch.Tensor) -> None:
        """Store normalisation statistics, e.g. `lattice_mean=...` (saved with the weights)."""
        for name, value in stats.items():
            value = torch.as_tensor(value, dtype=torch.float32)
            buffer = getattr(self, name)
            if buffer.shape != value.shape:
                setattr(self, name, value.clone())
            else:
                buffer.copy_(value)

    def composition_counts(self, batch: GraphBatch) -> torch.Tensor:
        """(B, V + 1) atom counts per vocabulary element (last column: elements outside it)."""
        counts = torch.zeros(batch.n_graphs, self.n_vocab + 1, device=batch.distances.device)
        index = batch.graph_index * (self.n_vocab + 1) + self.vocab_index[batch.atomic_numbers]
        counts.view(-1).index_add_(0, index, torch.ones_like(index, dtype=counts.dtype))
        return counts

    def encode(self, batch: GraphBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and log-variance of q(z | x), each (B, latent)."""
        h = self.embed(self.element_features[batch.atomic_numbers])
        e = self.expand(batch.distances)
        for conv in self.convs:
            h = conv(h, batch.edge_index, e)
        pooled = scatter_mean(h, batch.graph_index, batch.n_graphs)
        glob = ((batch.global_features - self.global_mean) / self.global_std)
        glob = glob.clamp(-GLOBAL_CLAMP, GLOBAL_CLAMP)
        counts = self.composition_counts(batch)
        n = counts.sum(1).long().clamp(1, self.config.max_atoms)
        n_onehot = nn.functional.one_hot(n - 1, self.config.max_atoms).float()
        fractions = counts / counts.sum(1, keepdim=True).clamp(min=1)
        out = self.encoder_head(torch.cat([pooled, glob, fractions, n_onehot], dim=1))
        mu, logvar = out.chunk(2, dim=1)
        return mu, logvar.clamp(-10.0, 2.0)

    def predict_conditions(self, z: torch.Tensor) -> torch.Tensor:
        """Standardised property predictions from the latent vector, (B, n_conditions)."""
        if self.property_head is None:
            return z.new_zeros(z.shape[0], 0)
        return self.property_head(z)

    def prior_mean(self, y: torch.Tensor) -> torch.Tensor:
        """Mean of p(z | y) for standardised conditions y; zero without conditions."""
        if self.prior_head is None:
            return y.new_zeros(y.shape[0], self.config.latent)
        return self.prior_head(y)

    def decode(self, z: torch.Tensor, y: torch.Tensor) -> DecoderOutput:
        """One-shot decoding of (z, standardised y) into raw crystal outputs."""
        c = self.config
        h = self.decoder(torch.cat([z, y], dim=1))
        coords = self.coord_head(h).view(-1, c.max_atoms, 3)
        coords = torch.cat([torch.zeros_like(coords[:, :1]), coords[:, 1:]], dim=1)
        return DecoderOutput(
            count_logits=self.count_head(h).view(-1, self.n_vocab, c.max_atoms + 1),
            lattice=self.lattice_head(h),
            coords=coords,
            species_logits=self.species_head(h) if self.species_head is not None else None,
        )

    def standardise_conditions(self, y: torch.Tensor) -> torch.Tensor:
        return (y - self.condition_mean) / self.condition_std

    def lattice_parameters(self, lattice: torch.Tensor) -> torch.Tensor:
        """Standardised lattice features -> (a, b, c, alpha, beta, gamma)."""
        x = lattice * self.lattice_std + self.lattice_mean
        return torch.cat([torch.exp(x[:, :3]), x[:, 3:]], dim=1)


def lattice_features(parameters: torch.Tensor) -> torch.Tensor:
    """(a, b, c, alpha, beta, gamma) -> unstandardised features (log lengths, angles)."""
    return torch.cat([torch.log(parameters[:, :3]), parameters[:, 3:]], dim=1)

