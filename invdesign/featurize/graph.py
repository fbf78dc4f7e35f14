"""Periodic crystal graphs: atoms as nodes, neighbours within a cutoff (periodic images) as edges.

Distances are stored raw; the Gaussian expansion happens inside the model (it is cheap there and
keeps the cache small). Graphs for a list of structures are cached on disk under a key made from the
structures' content and the graph parameters, so a second run skips the neighbour search.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from pymatgen.core import Structure

from invdesign.featurize.composition import (
    atomic_numbers,
    composition_descriptor,
    density,
    n_composition_features,
)

logger = logging.getLogger(__name__)

GRAPH_FORMAT = 2  # bump when the graph construction changes, invalidating caches
TIE_TOLERANCE = 0.01  # A


@dataclass(frozen=True, kw_only=True)
class GraphConfig:
    """Neighbour search parameters: cutoff radius (A) and maximum neighbours kept per atom."""

    cutoff: float = 6.0
    max_neighbors: int = 12
    composition_features: bool = True
    structure_features: bool = True

    def __post_init__(self) -> None:
        if self.cutoff <= 0 or self.max_neighbors < 1:
            raise ValueError(f"GraphConfig needs cutoff > 0 and max_neighbors >= 1, got {self}")


@dataclass(frozen=True)
class CrystalGraph:
    """Graph of one crystal.

    Attributes:
        atomic_numbers: (n_atoms,) int64.
        edge_index: (2, n_edges) int64, rows (center, neighbour); each periodic image is an edge.
        distances: (n_edges,) float32 in A.
        volume_per_atom: cell volume / n_atoms in A^3.
        density: mass density in g/cm^3.
        global_features: (n_global,) float32 crystal-level inputs to the model's head:
            ln(volume per atom), density and, if configured, the composition descriptor.
    """

    atomic_numbers: np.ndarray
    edge_index: np.ndarray
    distances: np.ndarray
    volume_per_atom: float
    density: float
    global_features: np.ndarray

    @property
    def n_atoms(self) -> int:
        return len(self.atomic_numbers)


def build_graph(structure: Structure, config: GraphConfig = GraphConfig()) -> CrystalGraph:
    """Build the periodic neighbour graph of a structure (pymatgen's vectorised neighbour list).

    Each atom keeps its `max_neighbors` nearest neighbours within `cutoff` (more when several tie
    at the last distance). An isolated atom (no neighbour within the cutoff) has no edges.
    """
    center, neighbor, _, dist = structure.get_neighbor_list(config.cutoff)
    keep = dist > 1e-8
    center, neighbor, dist = center[keep], neighbor[keep], dist[keep]
    order = np.lexsort((dist, center))
    center, neighbor, dist = center[order], neighbor[order], dist[order]
    if len(center):
        # Keep the max_neighbors nearest, plus any neighbour tied (within 0.01 A) with the last
        # one kept, so the graph does not depend on atom order or on how ties are broken.
        starts = np.searchsorted(center, center, side="left")
        counts = np.bincount(center, minlength=len(structure))
        last = starts + np.minimum(counts[center], config.max_neighbors) - 1
        keep = dist <= dist[last] + TIE_TOLERANCE
        center, neighbor, dist = center[keep], neighbor[keep], dist[keep]
    z = atomic_numbers(structure)
    volume = structure.volume
    rho = density(z, volume)
    glob = [np.log(volume / len(z)), rho]
    if config.structure_features:
        glob += local_environment_features(center, dist, len(z), volume)
    if config.composition_features:
        glob = np.concatenate([glob, composition_descriptor(z)])
    return CrystalGraph(
        atomic_numbers=z,
        edge_index=np.vstack([center, neighbor]).astype(np.int64),
        distances=dist.astype(np.float32),
        volume_per_atom=float(volume / len(z)),
        density=rho,
        global_features=np.asarray(glob, dtype=np.float32),
    )


def local_environment_features(center: np.ndarray, dist: np.ndarray, n_atoms: int,
                               volume: float) -> list[float]:
    """Six bonding-topology statistics that separate dense 3D networks from layered or
    molecular solids: mean/std/min of the nearest-neighbour distance over (volume per atom)^1/3,
    and mean/std/min of the effective coordination (neighbours within 1.2x the nearest)."""
    if not len(dist):
        return [0.0] * N_STRUCTURE_FEATURES
    nearest = np.full(n_atoms, np.inf)
    np.minimum.at(nearest, center, dist)
    coordination = np.bincount(center, weights=dist <= 1.2 * nearest[center], minlength=n_atoms)
    nearest = np.where(np.isfinite(nearest), nearest, dist.max()) / (volume / n_atoms) ** (1 / 3)
    return [nearest.mean(), nearest.std(), nearest.min(),
            coordination.mean(), coordination.std(), coordination.min()]


N_STRUCTURE_FEATURES = 6


def n_global_features(config: GraphConfig) -> int:
    """Length of `CrystalGraph.global_features` under `config`."""
    return (2 + (N_STRUCTURE_FEATURES if config.structure_features else 0)
            + (n_composition_features() if config.composition_features else 0))


def structure_key(structure: Structure) -> str:
    """Content hash of a structure (lattice, species, fractional coordinates at 1e-6 precision)."""
    h = hashlib.sha256()
    h.update(np.round(structure.lattice.matrix, 6).tobytes())
    h.update(",".join(str(site.specie) for site in structure).encode())
    h.update(np.round(structure.frac_coords, 6).tobytes())
    return h.hexdigest()


def _cache_key(structures: Sequence[Structure], config: GraphConfig) -> str:
    h = hashlib.sha256(f"{GRAPH_FORMAT}:{sorted(asdict(config).items())}".encode())
    for s in structures:
        h.update(structure_key(s).encode())
    return h.hexdigest()[:32]


def _save(path: Path, graphs: Sequence[CrystalGraph]) -> None:
    tmp = path.with_suffix(".tmp.npz")
    np.savez(
        tmp,
        n_atoms=np.array([g.n_atoms for g in graphs]),
        n_edges=np.array([g.distances.size for g in graphs]),
        atomic_numbers=np.concatenate([g.atomic_numbers for g in graphs]),
        edge_index=np.concatenate([g.edge_index for g in graphs], axis=1),
        distances=np.concatenate([g.distances for g in graphs]),
        volume_per_atom=np.array([g.volume_per_atom for g in graphs]),
        density=np.array([g.density for g in graphs]),
        global_features=np.vstack([g.global_features for g in graphs]),
    )
    tmp.replace(path)


def _load(path: Path) -> list[CrystalGraph]:
    with np.load(path) as f:
        atom_split = np.cumsum(f["n_atoms"])[:-1]
        edge_split = np.cumsum(f["n_edges"])[:-1]
        z = np.split(f["atomic_numbers"], atom_split)
        ei = np.split(f["edge_index"], edge_split, axis=1)
        d = np.split(f["distances"], edge_split)
        glob = f["global_features"]
        return [CrystalGraph(z[i], ei[i], d[i], float(v), float(rho), glob[i])
                for i, (v, rho) in enumerate(zip(f["volume_per_atom"], f["density"], strict=True))]


def featurize_structures(
    structures: Sequence[Structure],
    config: GraphConfig = GraphConfig(),
    *,
    cache_dir: str | Path | None = None,
    progress: Callable[[int], None] | None = None,
) -> list[CrystalGraph]:
    """Graphs for many structures, read from / written to `cache_dir` when given.

    Args:
        structures: crystals to featurise.
        config: neighbour search parameters.
        cache_dir: folder for `graphs-<hash>.npz`; the hash covers the structures' content and
            `config`, so a changed dataset or cutoff never reads a stale cache.
        progress: optional callback called with the number of structures just processed.
    """
    path = None
    if cache_dir is not None and len(structures):
        path = Path(cache_dir) / f"graphs-{_cache_key(structures, config)}.npz"
        if path.exists():
            logger.info("graph cache hit: %s", path)
            return _load(path)
    graphs = []
    for s in structures:
        graphs.append(build_graph(s, config))
        if progress is not None:
            progress(1)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        _save(path, graphs)
        logger.info("graph cache written: %s", path)
    return graphs
