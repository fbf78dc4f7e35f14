"""Periodic crystal graphs: atoms as nodes, neighbours within a cutoff (periodic images) as edges.

Distances are stored raw; the Gaussian expansion happens inside the model (it is cheap there and
keeps the cache small). Optionally each edge also carries a bond-angle descriptor: the
distribution of the angles it makes with the centre atom's other bonds (three-body information
that a distance-only graph lacks, and that shear stiffness depends on). Graphs for a list of
structures are cached on disk under a key made from the structures' content and the graph
parameters, so a second run skips the neighbour search.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path

import numpy as np
from pymatgen.core import Structure

from invdesign.featurize.composition import (
    atomic_numbers,
    composition_descriptor,
    density,
    n_composition_features,
)
from invdesign.parallel import Increments, map_chunks

logger = logging.getLogger(__name__)

GRAPH_FORMAT = 3  # bump when the graph construction changes, invalidating caches
TIE_TOLERANCE = 0.01  # A
ANGLE_SHELL = 0.5  # A: bond weight in the angle descriptor, exp(-(r - r_nearest) / ANGLE_SHELL)


@dataclass(frozen=True, kw_only=True)
class GraphConfig:
    """Neighbour search parameters: cutoff radius (A) and maximum neighbours kept per atom.

    `angular`: number of Gaussians on cos(angle) in each edge's bond-angle descriptor (0: none).
    """

    cutoff: float = 6.0
    max_neighbors: int = 12
    composition_features: bool = True
    structure_features: bool = True
    angular: int = 0

    def __post_init__(self) -> None:
        if self.cutoff <= 0 or self.max_neighbors < 1 or self.angular < 0 or self.angular == 1:
            raise ValueError(f"GraphConfig needs cutoff > 0, max_neighbors >= 1 and angular 0 or "
                             f">= 2 Gaussians, got {self}")


@dataclass(frozen=True)
class CrystalGraph:
    """Graph of one crystal.

    Attributes:
        atomic_numbers: (n_atoms,) int64.
        edge_index: (2, n_edges) int64, rows (center, neighbour); each periodic image is an edge.
        distances: (n_edges,) float32 in A.
        angles: (n_edges, n_angular) float32 bond-angle descriptor of each edge (see
            `angle_descriptor`); no columns when the config asks for none.
        volume_per_atom: cell volume / n_atoms in A^3.
        density: mass density in g/cm^3.
        global_features: (n_global,) float32 crystal-level inputs to the model's head:
            ln(volume per atom), density and, if configured, the composition descriptor.
    """

    atomic_numbers: np.ndarray
    edge_index: np.ndarray
    distances: np.ndarray
    angles: np.ndarray
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
    center, neighbor, image, dist = structure.get_neighbor_list(config.cutoff)
    keep = dist > 1e-8
    order = np.lexsort((dist[keep], center[keep]))
    center, neighbor, image, dist = (a[keep][order] for a in (center, neighbor, image, dist))
    if len(center):
        # Keep the max_neighbors nearest, plus any neighbour tied (within 0.01 A) with the last
        # one kept, so the graph does not depend on atom order or on how ties are broken.
        starts = np.searchsorted(center, center, side="left")
        counts = np.bincount(center, minlength=len(structure))
        last = starts + np.minimum(counts[center], config.max_neighbors) - 1
        keep = dist <= dist[last] + TIE_TOLERANCE
        center, neighbor, image, dist = center[keep], neighbor[keep], image[keep], dist[keep]
    if config.angular:
        frac = structure.frac_coords
        vectors = (frac[neighbor] + image - frac[center]) @ structure.lattice.matrix
        angles = angle_descriptor(center, vectors, dist, len(structure), config.angular)
    else:
        angles = np.zeros((len(dist), 0), dtype=np.float32)
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
        angles=angles,
        volume_per_atom=float(volume / len(z)),
        density=rho,
        global_features=np.asarray(glob, dtype=np.float32),
    )


def angle_descriptor(center: np.ndarray, vectors: np.ndarray, dist: np.ndarray, n_atoms: int,
                     n_bins: int) -> np.ndarray:
    """Bond-angle descriptor of each edge (i, j): the weighted distribution of cos(j-i-k) over the
    centre's other edges (i, k), on `n_bins` Gaussians across [-1, 1].

    Edge (i, k) weighs exp(-(r_ik - r_nearest_i) / ANGLE_SHELL), so the first coordination shell
    dominates; the weights are normalised per edge (an atom with one neighbour gives zeros).
    Edges must be sorted by centre, then distance (as `build_graph` sorts them). Invariant to
    rotation, translation and atom order.
    """
    n_edges = len(center)
    if n_edges == 0:
        return np.zeros((0, n_bins), dtype=np.float32)
    counts = np.bincount(center, minlength=n_atoms)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    weight = np.exp(-(dist - dist[starts[center]]) / ANGLE_SHELL)  # first edge: the nearest
    # every ordered pair (a, b) of distinct edges with the same centre
    per_edge = counts[center]
    a = np.repeat(np.arange(n_edges), per_edge)
    b = starts[center[a]] + np.arange(len(a)) - np.repeat(np.cumsum(per_edge) - per_edge, per_edge)
    a, b = a[a != b], b[a != b]
    cos = np.einsum("ij,ij->i", vectors[a], vectors[b]) / (dist[a] * dist[b])
    width = 2.0 / (n_bins - 1)
    centres = np.linspace(-1.0, 1.0, n_bins)
    basis = np.exp(-((np.clip(cos, -1.0, 1.0)[:, None] - centres) / width) ** 2)
    out = np.zeros((n_edges, n_bins))
    np.add.at(out, a, weight[b, None] * basis)
    total = np.bincount(a, weights=weight[b], minlength=n_edges)
    return (out / np.where(total > 0, total, 1.0)[:, None]).astype(np.float32)


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
        angles=np.concatenate([g.angles for g in graphs]),
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
        angles = np.split(f["angles"], edge_split)
        glob = f["global_features"]
        return [CrystalGraph(z[i], ei[i], d[i], angles[i], float(v), float(rho), glob[i])
                for i, (v, rho) in enumerate(zip(f["volume_per_atom"], f["density"], strict=True))]


PARALLEL_MIN_GRAPHS = 2000  # batch size from which `n_jobs` > 1 pays for its processes


def _build_graphs(structures: list[Structure], *, config: GraphConfig) -> list[CrystalGraph]:
    return [build_graph(s, config) for s in structures]


def featurize_structures(
    structures: Sequence[Structure],
    config: GraphConfig = GraphConfig(),
    *,
    cache_dir: str | Path | None = None,
    progress: Callable[[int], None] | None = None,
    n_jobs: int = 1,
) -> list[CrystalGraph]:
    """Graphs for many structures, read from / written to `cache_dir` when given.

    Args:
        structures: crystals to featurise.
        config: neighbour search parameters.
        cache_dir: folder for `graphs-<hash>.npz`; the hash covers the structures' content and
            `config`, so a changed dataset or cutoff never reads a stale cache.
        progress: optional callback called with the number of structures just processed.
        n_jobs: worker processes for batches of at least `PARALLEL_MIN_GRAPHS` structures
            (the graphs do not depend on it).
    """
    path = None
    if cache_dir is not None and len(structures):
        path = Path(cache_dir) / f"graphs-{_cache_key(structures, config)}.npz"
        if path.exists():
            logger.info("graph cache hit: %s", path)
            return _load(path)
    if n_jobs > 1 and len(structures) >= PARALLEL_MIN_GRAPHS:
        graphs = map_chunks(partial(_build_graphs, config=config), structures, n_jobs,
                            progress=None if progress is None else Increments(progress))
    else:
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
