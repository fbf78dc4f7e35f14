"""What a decoded crystal is compared with: slot-aligned targets, per-crystal error, and the
latent refinement that fits z to one crystal.

Atom order and origin do not matter: the composition is a count per element, and before each
coordinate comparison every crystal's atoms are assigned to decoder slots (species block by
species block) by a Hungarian assignment on periodic distance, with slot 0 on each candidate
origin atom in turn and the cheapest assignment kept.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from torch.nn import functional

from invdesign.featurize.frames import CrystalFrame
from invdesign.models.vae import CrystalVAE, DecoderOutput, lattice_features

COORD_WEIGHT = 10.0  # coordinates against counts and lattice, as in training


def periodic_cost(pred: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Sum over x, y, z of 1 - cos(2 pi d) for pred (..., P, 3), target (..., T, 3): (..., P, T)."""
    d = pred[..., :, None, :] - target[..., None, :, :]
    return (1.0 - np.cos(2.0 * np.pi * d)).sum(-1)


def species_blocks(z: np.ndarray) -> list[tuple[int, int]]:
    """(start, end) of each run of equal atomic numbers in slot-ordered `z`."""
    edges = np.flatnonzero(np.diff(z)) + 1
    bounds = np.concatenate([[0], edges, [len(z)]])
    return list(zip(bounds[:-1].tolist(), bounds[1:].tolist(), strict=True))


def align(frame: CrystalFrame, coords: np.ndarray) -> np.ndarray:
    """Target coordinates in slot order for the best origin atom and atom-to-slot assignment.

    Slots hold the frame's species blocks in order; within each block atoms are assigned to
    slots by a Hungarian assignment on periodic distance, slot 0 holds the origin atom, and
    the origin atom (any anchor) giving the lowest total cost is kept.

    Args:
        frame: the target crystal (n atoms, slot order).
        coords: (M >= n, 3) decoded fractional coordinates (slot 0 at the origin).

    Returns:
        (n, 3) target fractional coordinates, row i for slot i.
    """
    blocks = species_blocks(frame.atomic_numbers)
    best_cost, best = np.inf, frame.frac_coords
    for k in frame.anchors:
        shifted = frame.frac_coords - frame.frac_coords[k]
        aligned = np.empty_like(shifted)
        aligned[0] = shifted[k]
        total = 0.0
        for a, b in blocks:
            atoms = np.arange(a, b)
            slots = np.arange(a, b)
            if a == 0:
                atoms, slots = atoms[atoms != k], slots[1:]
            if len(atoms) == 0:
                continue
            cost = periodic_cost(coords[slots], shifted[atoms])
            rows, cols = linear_sum_assignment(cost)
            total += cost[rows, cols].sum()
            aligned[slots[rows]] = shifted[atoms[cols]]
        if total < best_cost:
            best_cost, best = total, aligned
    return best


def reconstruction_targets(model: CrystalVAE, frames: Sequence[CrystalFrame],
                           out: DecoderOutput) -> dict[str, torch.Tensor]:
    """Per-crystal element counts, slot-aligned coordinates with their mask, lattice, and the
    number of distinct elements minus one (the species head's class)."""
    m, b = model.config.max_atoms, len(frames)
    counts = torch.zeros(b, model.n_vocab, dtype=torch.long)
    coords = torch.zeros(b, m, 3)
    mask = torch.zeros(b, m, dtype=torch.bool)
    vocab_index = model.vocab_index.cpu().numpy()
    pred = out.coords.detach().cpu().numpy()
    for i, frame in enumerate(frames):
        columns, n = np.unique(vocab_index[frame.atomic_numbers], return_counts=True)
        counts[i, columns] = torch.from_numpy(n)
        coords[i, :frame.n_atoms] = torch.from_numpy(align(frame, pred[i]))
        mask[i, 1:frame.n_atoms] = True
    lattice = lattice_features(torch.from_numpy(np.stack([f.lattice for f in frames])))
    lattice = (lattice - model.lattice_mean) / model.lattice_std
    species = ((counts > 0).sum(1) - 1).clamp(0, max(model.config.max_species - 1, 0))
    return {"counts": counts, "coords": coords, "mask": mask, "lattice": lattice,
            "species": species}


def reconstruction_error(model: CrystalVAE, frames: Sequence[CrystalFrame], out: DecoderOutput,
                         coord_weight: float = COORD_WEIGHT) -> torch.Tensor:
    """Per-crystal error (B,): count cross-entropy summed over elements (plus that of the
    number of elements, where the model predicts it), squared lattice error summed over the six
    standardised features, and `coord_weight` x the mean periodic coordinate error over the
    aligned slots."""
    t = reconstruction_targets(model, frames, out)
    n_classes = out.count_logits.shape[-1]
    counts = functional.cross_entropy(out.count_logits.reshape(-1, n_classes),
                                      t["counts"].reshape(-1), reduction="none")
    lattice = ((out.lattice - t["lattice"]) ** 2).sum(1)
    coord_err = (1.0 - torch.cos(2.0 * math.pi * (out.coords - t["coords"]))).sum(-1)
    coords = (coord_err * t["mask"]).sum(1) / t["mask"].sum(1).clamp(min=1)
    error = counts.view(len(frames), -1).sum(1) + lattice + coord_weight * coords
    if out.species_logits is not None:
        error = error + functional.cross_entropy(out.species_logits, t["species"],
                                                 reduction="none")
    return error


def refine_latent(model: CrystalVAE, frames: Sequence[CrystalFrame], z0: torch.Tensor, *,
                  steps: int = 200, lr: float = 0.1) -> torch.Tensor:
    """Fit z to each crystal by gradient descent on its reconstruction error, from the encoder's
    mean `z0` (semi-amortised inference, Kim et al. 2018): the encoder's one-shot guess leaves
    an amortisation gap that a few hundred cheap decoder passes close. The conditions follow
    z through the property head, as in `Generator.decode`. Returns the lowest-error z seen for
    each crystal (never worse than `z0`)."""
    was_training = model.training
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    try:
        z = z0.detach().clone().requires_grad_(True)
        optimizer = torch.optim.Adam([z], lr=lr)
        best = torch.full((len(frames),), math.inf)
        best_z = z0.detach().clone()
        for _ in range(steps + 1):
            out = model.decode(z, model.predict_conditions(z))
            error = reconstruction_error(model, frames, out)
            better = error.detach() < best
            best = torch.where(better, error.detach(), best)
            best_z[better] = z.detach()[better]
            optimizer.zero_grad()
            error.sum().backward()
            optimizer.step()
    finally:
        for p in model.parameters():
            p.requires_grad_(True)
        model.train(was_training)
    return best_z
