"""Coordinate denoiser: periodic neighbours, symmetry, training and refinement."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
from pymatgen.core import Lattice, Structure

from invdesign.featurize.frames import padded_positions
from invdesign.generator import refine_structures
from invdesign.models.denoiser import (
    Denoiser,
    DenoiserConfig,
    PaddedCrystals,
    bond_angles,
    periodic_knn,
)
from invdesign.train.denoiser import DenoiserTrainConfig, train_denoiser

SMALL = DenoiserConfig(hidden=32, n_layers=2, n_gaussians=16, k=8, sigma_max=0.5)


def _padded(structures: list[Structure]) -> PaddedCrystals:
    return PaddedCrystals.from_arrays(*padded_positions(structures))


def _rotation(seed: int = 0) -> torch.Tensor:
    q, _ = torch.linalg.qr(torch.randn(3, 3, generator=torch.Generator().manual_seed(seed)))
    return q


def test_periodic_knn_matches_pymatgen(nacl, si):
    """The 8 nearest neighbours (periodic images included) agree with pymatgen's."""
    crystals = _padded([nacl, si])
    _, vectors = periodic_knn(crystals, k=8, images=2)
    for b, s in enumerate([nacl, si]):
        for i in range(len(s)):
            expected = sorted(n.nn_distance for n in s.get_neighbors(s[i], 5.0))[:8]
            got = sorted(vectors[b, i].norm(dim=-1).tolist())
            np.testing.assert_allclose(got, expected, atol=1e-4)
    # rocksalt: 6 unlike neighbours at a / 2
    np.testing.assert_allclose(vectors[0, 0].norm(dim=-1).sort().values[:6], 2.82, atol=1e-4)


def test_padding_never_becomes_a_neighbour(nacl, cu):
    crystals = _padded([nacl, cu])  # cu padded from 4 to 8 slots
    j, _ = periodic_knn(crystals, k=8, images=2)
    assert int(j[1, :4].max()) < 4


def _basis(cos: float, n_bins: int) -> torch.Tensor:
    centres = torch.linspace(-1.0, 1.0, n_bins)
    return torch.exp(-((cos - centres) / (2.0 / (n_bins - 1))) ** 2)


def test_bond_angles_of_diamond_and_rocksalt(si, nacl):
    """Diamond: every bond sees its three partners at the tetrahedral angle (cos = -1/3);
    rocksalt: four at 90 degrees and one opposite."""
    _, vectors = periodic_knn(_padded([si]), k=4, images=2)
    got = bond_angles(vectors, vectors.norm(dim=-1), 9)
    torch.testing.assert_close(got, _basis(-1 / 3, 9).expand_as(got))
    _, vectors = periodic_knn(_padded([nacl]), k=6, images=2)
    got = bond_angles(vectors, vectors.norm(dim=-1), 9)
    torch.testing.assert_close(got, ((4 * _basis(0.0, 9) + _basis(-1.0, 9)) / 5).expand_as(got))


def _rotated_and_permuted(structure: Structure):
    """A rattled copy of `structure` as a batch of one, the same rotated (and the rotation), and
    the same with its atoms relabelled (and the permutation)."""
    s = structure.copy()
    # a fixed rattle: every atom's 8th and 9th neighbours differ by >= 5e-3 A (a random one
    # can nearly tie them, and rounding after the rotation then swaps them)
    s.perturb(0.1, seed=11)
    crystals = _padded([s])
    rot = _rotation()
    rotated = PaddedCrystals(crystals.lattice @ rot, crystals.cart @ rot, crystals.numbers)
    perm = torch.randperm(len(s), generator=torch.Generator().manual_seed(1))
    permuted = PaddedCrystals(crystals.lattice, crystals.cart[:, perm], crystals.numbers[:, perm])
    return crystals, rotated, rot, permuted, perm


@pytest.mark.parametrize("n_angular", [0, 8])
def test_prediction_is_rotation_and_permutation_equivariant(nacl, n_angular):
    torch.manual_seed(0)
    model = Denoiser(replace(SMALL, n_angular=n_angular)).eval()
    crystals, rotated, rot, permuted, perm = _rotated_and_permuted(nacl)
    sigma = torch.tensor([0.1])
    with torch.no_grad():
        eps = model(crystals, sigma)
        assert torch.allclose(model(rotated, sigma), eps @ rot, atol=1e-5)
        assert torch.allclose(model(permuted, sigma), eps[:, perm], atol=1e-5)


def test_cell_strain_is_rotation_equivariant_and_permutation_invariant(nacl):
    """The predicted strain of a rotated crystal is the rotated strain, R^T E R (row vectors),
    and symmetric; relabelling atoms does not change it."""
    torch.manual_seed(0)
    model = _random_cell_head()
    crystals, rotated, rot, permuted, _ = _rotated_and_permuted(nacl)
    sigma = torch.tensor([0.3])
    with torch.no_grad():
        _, strain = model.predict(crystals, sigma)
        assert strain.abs().max() > 1e-3
        torch.testing.assert_close(strain, strain.transpose(1, 2))
        torch.testing.assert_close(model.predict(rotated, sigma)[1], rot.T @ strain @ rot,
                                   atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(model.predict(permuted, sigma)[1], strain, atol=1e-5,
                                   rtol=1e-4)


def _random_cell_head() -> Denoiser:
    """A denoiser with a cell head whose zero initial weights are replaced by random ones."""
    model = Denoiser(replace(SMALL, lattice_noise=0.1)).eval()
    with torch.no_grad():
        for layer in (model.strain_out, model.strain_iso):
            layer.weight.normal_(0.0, 0.3)
            layer.bias.normal_(0.0, 0.1)
    return model


def test_refinement_undoes_a_known_cell_strain(nacl):
    """With the exact strain as the prediction (and no position noise), refinement walks a
    strained cell back to the reference cell and keeps the fractional coordinates."""
    model = Denoiser(replace(SMALL, lattice_noise=0.1))
    reference = _padded([nacl]).lattice
    strain = torch.tensor([[0.06, 0.02, 0.0], [0.02, -0.03, 0.01], [0.0, 0.01, 0.04]])
    strained = nacl.copy()
    strained.lattice = Lattice(nacl.lattice.matrix @ (np.eye(3) + strain.numpy()))

    def exact(crystals, sigma):  # the strain still between the current and the reference cell
        current = torch.linalg.solve(reference, crystals.lattice) - torch.eye(3)
        return torch.zeros_like(crystals.cart), current

    model.predict = exact
    out = refine_structures(model, [strained], sigma_start=0.3, steps=5)[0]
    np.testing.assert_allclose(out.lattice.matrix, nacl.lattice.matrix, atol=1e-4)
    moved = (out.frac_coords - strained.frac_coords + 0.5) % 1.0 - 0.5  # 0 and 1 are one point
    np.testing.assert_allclose(moved, 0.0, atol=1e-5)
    kept = refine_structures(model, [strained], sigma_start=0.3, steps=5, cell=False)[0]
    np.testing.assert_allclose(kept.lattice.matrix, strained.lattice.matrix, atol=1e-5)


def test_a_new_cell_head_changes_nothing_until_trained(nacl, si):
    """A distance-only denoiser widened with a cell head predicts the same noise and leaves
    the cell as it is; asking a denoiser without one to refine cells is an error."""
    torch.manual_seed(0)
    plain = Denoiser(SMALL).eval()
    with_cell = Denoiser(replace(SMALL, lattice_noise=0.1)).eval()
    with_cell.load_widened(plain)
    crystals = _padded([nacl.copy().perturb(0.1, seed=0), si.copy().perturb(0.1, seed=1)])
    sigma = torch.tensor([0.1, 0.3])
    with torch.no_grad():
        eps, strain = with_cell.predict(crystals, sigma)
        torch.testing.assert_close(eps, plain(crystals, sigma))
        assert torch.equal(strain, torch.zeros_like(strain))
    out = refine_structures(with_cell, [nacl], steps=3)[0]
    np.testing.assert_allclose(out.lattice.matrix, nacl.lattice.matrix, atol=1e-5)
    with pytest.raises(ValueError, match="lattice_noise"):
        refine_structures(plain, [nacl], steps=3, cell=True)
    with pytest.raises(ValueError, match="lattice_noise"):
        DenoiserConfig(lattice_noise=0.7)


def test_trained_cell_head_shrinks_a_swollen_crystal(nacl, si, cu):
    """Trained with cell strains on three prototypes, refinement takes at least 40 % of an
    isotropic 5 % stretch of each back out (an untrained head leaves the cell as it is)."""
    config = replace(SMALL, lattice_noise=0.1)
    model, _ = train_denoiser([nacl, si, cu] * 8, [nacl, si, cu], config,
                              DenoiserTrainConfig(epochs=80, batch_size=8, lr=3e-3))
    for ideal in (nacl, si, cu):
        swollen = ideal.copy()
        swollen.scale_lattice(ideal.volume * 1.05 ** 3)
        out = refine_structures(model, [swollen], sigma_start=0.5, steps=10)[0]
        assert abs(out.volume / ideal.volume - 1) < 0.6 * (1.05 ** 3 - 1)


def test_refinement_keeps_lattice_and_species(nacl, cu):
    model = Denoiser(SMALL)
    out = refine_structures(model, [nacl, None, cu], steps=3, noise=True, seed=0)
    assert out[1] is None
    for before, after in [(nacl, out[0]), (cu, out[2])]:
        assert after.composition == before.composition
        assert [site.specie for site in after] == [site.specie for site in before]
        np.testing.assert_allclose(after.lattice.matrix, before.lattice.matrix, atol=1e-5)


def test_refinement_does_not_depend_on_batching(nacl, si, cu):
    """Deterministic refinement gives the same positions whatever the batch size and order."""
    model = Denoiser(SMALL)
    # rattled copies: no ties among neighbour distances (which topk may break either way)
    batch = [None if s is None else s.copy().perturb(0.05, seed=seed)
             for seed, s in enumerate((si, nacl, None, cu, nacl))]
    together = refine_structures(model, batch, steps=3, noise=False)
    alone = refine_structures(model, batch, steps=3, noise=False, batch_atoms=1)
    for a, b in zip(together, alone, strict=True):
        if a is None:
            assert b is None
            continue
        assert a.composition == b.composition
        wrapped = (a.frac_coords - b.frac_coords + 0.5) % 1.0 - 0.5  # 0 and 1 are one point
        np.testing.assert_allclose(wrapped, 0.0, atol=1e-5)


def test_refinement_in_worker_processes_gives_the_serial_result(nacl, si, cu, monkeypatch):
    """Deterministic schedules are dealt to processes batch by batch with the same result;
    a schedule that draws noise stays in one process, so its seed keeps its meaning."""
    from invdesign import generator

    monkeypatch.setattr(generator, "PARALLEL_MIN_REFINE", 2)
    model = Denoiser(SMALL)
    batch = [None if s is None else s.copy().perturb(0.05, seed=seed)
             for seed, s in enumerate((si, nacl, None, cu, nacl, si, cu))]
    for noise in (False, True):
        heard: list[tuple[int, int]] = []
        options = {"steps": 3, "noise": noise, "batch_atoms": 8, "seed": 4}
        serial = refine_structures(model, batch, **options)
        dealt = refine_structures(model, batch, n_jobs=2, on_batch=lambda *a, h=heard: h.append(a),
                                  **options)
        assert heard[-1] == (6, 6) and [d for d, _ in heard] == sorted(d for d, _ in heard)
        for a, b in zip(serial, dealt, strict=True):
            assert (a is None) == (b is None)
            if a is not None:
                np.testing.assert_array_equal(a.frac_coords, b.frac_coords)
                np.testing.assert_array_equal(a.lattice.matrix, b.lattice.matrix)
    assert not model.draws_noise(noise=False) and model.draws_noise(noise=True)
    assert model.draws_noise(start="random") and model.draws_noise(stochastic=True)


def test_trained_denoiser_pulls_perturbed_crystals_back(nacl, si, cu):
    """Trained on three prototypes, refinement moves perturbed copies closer to them."""
    train = [nacl, si, cu] * 8
    model, history = train_denoiser(train, [nacl, si, cu], SMALL,
                                    DenoiserTrainConfig(epochs=60, batch_size=8, lr=3e-3))
    assert history.val_loss[history.best_epoch] < 0.7 * history.val_loss[0]
    rng = np.random.default_rng(0)
    for ideal in (nacl, si):
        noisy = ideal.copy()
        shift = rng.normal(0.0, 0.15, (len(ideal), 3))
        shift -= shift.mean(0)
        for i, vector in enumerate(shift):
            noisy.translate_sites([i], vector, frac_coords=False, to_unit_cell=True)
        refined = refine_structures(model, [noisy], sigma_start=0.15, steps=10)[0]

        def rmsd(s: Structure, ideal=ideal) -> float:
            d = s.lattice.get_cartesian_coords(
                (s.frac_coords - ideal.frac_coords + 0.5) % 1.0 - 0.5)
            d -= d.mean(0)
            return float(np.sqrt((d ** 2).sum(1).mean()))

        assert rmsd(refined) < 0.6 * rmsd(noisy)


def test_state_round_trip():
    model = Denoiser(SMALL)
    state = model.state()
    path_state = {"config": state["config"], "state_dict": state["state_dict"]}
    again = Denoiser.from_state(path_state)
    assert again.config == SMALL
    crystals = _padded(
        [Structure(Lattice.cubic(3.0), ["Cu", "Cu"], [[0, 0, 0], [0.5, 0.5, 0.5]])])
    sigma = torch.tensor([0.2])
    with torch.no_grad():
        assert torch.allclose(model.eval()(crystals, sigma), again(crystals, sigma))


def test_bond_angle_features_widen_a_trained_denoiser_without_changing_it(nacl, si):
    """Angle columns added to a distance-only denoiser start at zero: same predictions, and
    training continues from there."""
    torch.manual_seed(0)
    plain = Denoiser(SMALL).eval()
    widened = Denoiser(replace(SMALL, n_angular=6)).eval()
    widened.load_widened(plain)
    crystals = _padded([nacl.copy().perturb(0.1, seed=0), si.copy().perturb(0.1, seed=1)])
    sigma = torch.tensor([0.1, 0.3])
    with torch.no_grad():
        torch.testing.assert_close(widened(crystals, sigma), plain(crystals, sigma))
    model, history = train_denoiser([nacl, si] * 4, [nacl, si], replace(SMALL, n_angular=6),
                                    DenoiserTrainConfig(epochs=2, batch_size=4), init=plain)
    assert model.config.n_angular == 6 and len(history.val_loss) == 2
    with pytest.raises(ValueError, match="cannot widen"):
        plain.load_widened(widened)


def test_config_rejects_a_single_angle_bin():
    with pytest.raises(ValueError, match="n_angular"):
        DenoiserConfig(n_angular=1)


@pytest.mark.parametrize("bad", [0.0, -1.0])
def test_refine_rejects_non_positive_noise(bad, cu):
    with pytest.raises(ValueError, match="sigma_start"):
        refine_structures(Denoiser(SMALL), [cu], sigma_start=bad)


def test_random_start_keeps_cell_and_species_and_follows_the_seed(nacl, cu):
    model = Denoiser(SMALL)
    first, again, other = (refine_structures(model, [nacl, cu], start="random", steps=2,
                                             seed=seed) for seed in (0, 0, 1))
    for before, after in zip([nacl, cu], first, strict=True):
        assert [site.specie for site in after] == [site.specie for site in before]
        np.testing.assert_allclose(after.lattice.matrix, before.lattice.matrix, atol=1e-5)
        assert not np.allclose(after.frac_coords, before.frac_coords, atol=1e-2)
    np.testing.assert_allclose(first[0].frac_coords, again[0].frac_coords)
    assert not np.allclose(first[0].frac_coords, other[0].frac_coords, atol=1e-2)


def test_denoiser_builds_crystals_from_random_positions():
    """Trained with noise up to the cell size, deterministic refinement from uniform random
    positions puts the second atom of CsCl and bcc Fe at the body centre in most draws; an
    untrained network does not."""
    cscl = Structure(Lattice.cubic(3.0), ["Cs", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    fe = Structure(Lattice.cubic(2.87), ["Fe", "Fe"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    config = replace(SMALL, sigma_max=2.0)
    trained, _ = train_denoiser([cscl, fe] * 12, [cscl, fe], config,
                                DenoiserTrainConfig(epochs=60, batch_size=8, lr=3e-3))

    def body_centred(model: Denoiser) -> int:
        out = refine_structures(model, [cscl] * 8 + [fe] * 8, start="random",
                                sigma_start=2.0, steps=20, seed=0)
        offsets = [s.frac_coords[1] - s.frac_coords[0] - 0.5 for s in out]
        errors = [np.linalg.norm(s.lattice.get_cartesian_coords((d + 0.5) % 1.0 - 0.5))
                  for s, d in zip(out, offsets, strict=True)]
        return sum(e < 0.1 for e in errors)

    assert body_centred(trained) >= 8
    assert body_centred(Denoiser(config)) <= 2


def test_config_rejects_unknown_start():
    with pytest.raises(ValueError, match="refine_start"):
        DenoiserConfig(refine_start="somewhere")


def test_passes_walk_the_ladder_again_from_the_last_result(nacl, si):
    """Two passes equal a second refinement of the first pass's output, with cell refinement
    on, and noise is added before the first pass only."""
    torch.manual_seed(0)
    model = Denoiser(replace(SMALL, lattice_noise=0.1)).eval()
    with torch.no_grad():  # a small random cell head: strains of a few per cent per pass
        for layer in (model.strain_out, model.strain_iso):
            layer.weight.normal_(0.0, 0.02)
            layer.bias.zero_()
    strained = nacl.copy()
    strained.apply_strain(0.05)
    batch = [strained, si]
    once = refine_structures(model, batch, sigma_start=0.3, steps=4)
    twice = refine_structures(model, once, sigma_start=0.3, steps=4)
    both = refine_structures(model, batch, sigma_start=0.3, steps=4, passes=2)
    for expected, got in zip(twice, both, strict=True):
        np.testing.assert_allclose(got.lattice.matrix, expected.lattice.matrix, atol=1e-4)
        np.testing.assert_allclose(got.cart_coords, expected.cart_coords, atol=1e-4)
    assert not np.allclose(once[0].lattice.matrix, both[0].lattice.matrix, atol=1e-4)
    noisy_once = refine_structures(model, batch, sigma_start=0.3, steps=4, noise=True, seed=3)
    noisy_both = refine_structures(model, batch, sigma_start=0.3, steps=4, noise=True, seed=3,
                                   passes=2)
    then_plain = refine_structures(model, noisy_once, sigma_start=0.3, steps=4)
    np.testing.assert_allclose(noisy_both[1].cart_coords, then_plain[1].cart_coords, atol=1e-4)


def test_passes_must_be_positive(cu):
    with pytest.raises(ValueError, match="refine_passes"):
        DenoiserConfig(refine_passes=0)
    with pytest.raises(ValueError, match="passes"):
        refine_structures(Denoiser(SMALL), [cu], passes=0)


def _toward(target: np.ndarray, k: float):
    """A stand-in denoiser whose flow dx/dsigma = k (x - target) / sigma (minimum image) is
    solved exactly by x - target = (x_0 - target) (sigma / sigma_0)^k: its final denoised
    estimate x - sigma eps lands at target + (1 - k) (x(sigma_min) - target)."""
    goal = torch.tensor(target, dtype=torch.float32)

    def predict(crystals, sigma):
        frac = torch.linalg.solve(crystals.lattice.transpose(1, 2),
                                  (crystals.cart - goal).transpose(1, 2)).transpose(1, 2)
        offset = (frac - torch.round(frac)) @ crystals.lattice
        return k * offset / sigma[:, None, None], None

    return predict


def _flow_error(solver: str, steps: int, start: np.ndarray, target: np.ndarray,
                k: float = 0.5) -> float:
    model = Denoiser(SMALL)
    model.predict = _toward(target, k)
    cell = Lattice.cubic(10.0)
    crystal = Structure(cell, ["Cu"], [start], coords_are_cartesian=True)
    out = refine_structures(model, [crystal], sigma_start=0.3, steps=steps, solver=solver)[0]
    sigma_min = SMALL.sigma_min
    exact = target + (1 - k) * (start - target) * (sigma_min / 0.3) ** k
    offset = out.lattice.get_fractional_coords(out.cart_coords[0] - exact)
    return float(np.linalg.norm(cell.get_cartesian_coords(offset - np.round(offset))))


def test_multistep_solver_is_second_order():
    """Doubling the steps about halves Euler's error and cuts the multistep solver's at
    least 3.5-fold; at the same steps the multistep solver is far closer to the exact flow."""
    start, target = np.array([5.0, 5.0, 5.0]), np.array([6.5, 4.0, 5.5])
    euler = [_flow_error("euler", n, start, target) for n in (8, 16)]
    multistep = [_flow_error("multistep", n, start, target) for n in (8, 16)]
    assert 1.7 < euler[0] / euler[1] < 2.6
    assert multistep[0] / multistep[1] > 3.5
    assert multistep[0] < euler[0] / 10


def test_multistep_solver_follows_atoms_across_the_cell_boundary():
    """An atom that leaves the cell mid-flow (and is wrapped back in) ends where the same
    flow shifted by half a cell, never crossing, ends."""
    start, target = np.array([9.6, 5.0, 5.0]), np.array([11.2, 5.0, 5.0])  # crosses x = 10
    shift = np.array([-5.0, 0.0, 0.0])
    crossing = _flow_error("multistep", 8, start, target)
    inside = _flow_error("multistep", 8, start + shift, target + shift)
    assert crossing == pytest.approx(inside, abs=1e-5)
    assert crossing < 0.01


def test_config_rejects_unknown_solver(cu):
    with pytest.raises(ValueError, match="refine_solver"):
        DenoiserConfig(refine_solver="rk4")
    with pytest.raises(ValueError, match="solver"):
        refine_structures(Denoiser(SMALL), [cu], solver="rk4")
