"""Crystal VAE: decoder frames, permutation/origin-free alignment, model, training, generator."""

from __future__ import annotations

import json
import math
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from pymatgen.core import Composition, Lattice, Structure

from invdesign.data.archive import read_structures, write_structures
from invdesign.featurize.batch import collate
from invdesign.featurize.frames import (
    crystal_frame,
    crystal_frames,
    decoded_cell,
    lattice_from_parameters,
    lattice_matrices,
    scaled_matrices,
    slot_order,
    slot_species,
    structure_from_arrays,
)
from invdesign.featurize.graph import GraphConfig, featurize_structures
from invdesign.generator import Generator, alternative_compositions, composition_from_logits
from invdesign.models.denoiser import Denoiser, DenoiserConfig
from invdesign.models.reconstruction import (
    align,
    periodic_cost,
    reconstruction_error,
    refine_latent,
    species_blocks,
)
from invdesign.models.vae import CrystalVAE
from invdesign.train.denoiser import DenoiserTrainConfig
from invdesign.train.vae import VAETrainConfig, fit_species_head
from invdesign.train.vae_pipeline import (
    VAEArchitecture,
    VAERunConfig,
    checkpoint_examples,
    evaluate_reconstruction,
    fit_checkpoint_latent_prior,
    held_out_structures,
    save_vae_run,
    split_structures,
    train_checkpoint_denoiser,
    train_generator,
)
from tests.toy_data import write_toy_dataset

TINY = VAERunConfig(
    conditions=("bulk_modulus_vrh", "shear_modulus_vrh"), split="random",
    fractions=(0.6, 0.2, 0.2), seed=0,
    architecture=VAEArchitecture(latent=8, hidden=16, n_conv=1, decoder_hidden=32),
    train=VAETrainConfig(epochs=4, batch_size=4, kl_warmup=2, patience=5))


def perovskite() -> Structure:
    return Structure(Lattice.cubic(3.9), ["Sr", "Ti", "O", "O", "O"],
                     [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]])


def test_slot_order_puts_rarest_then_heaviest_species_first():
    z = np.array([8, 22, 8, 38, 8])
    assert z[slot_order(z)].tolist() == [38, 22, 8, 8, 8]
    assert slot_species({8: 3, 22: 1, 38: 1}).tolist() == [38, 22, 8, 8, 8]
    assert slot_species({6: 4}).tolist() == [6, 6, 6, 6]


def test_frame_is_independent_of_atom_order_and_cell_choice():
    s = perovskite()
    shuffled = Structure(s.lattice, [s[i].specie for i in (3, 1, 4, 0, 2)],
                         [s[i].frac_coords for i in (3, 1, 4, 0, 2)])
    sheared = s.copy()
    sheared.make_supercell([[1, 1, 0], [0, 1, 0], [0, 0, 1]])  # same lattice, other basis
    frames = [crystal_frame(x) for x in (s, shuffled, sheared)]
    for f in frames[1:]:
        np.testing.assert_allclose(f.lattice, frames[0].lattice, atol=1e-4)
        assert f.atomic_numbers.tolist() == frames[0].atomic_numbers.tolist() == [38, 22, 8, 8, 8]
    assert frames[0].anchors.tolist() == [0]


def test_frame_round_trips_to_an_equivalent_structure(nacl):
    frame = crystal_frame(nacl)
    back = decoded_cell(frame.lattice, frame.atomic_numbers, frame.frac_coords).to_structure()
    assert back.composition.reduced_formula == "NaCl"
    assert back.volume == pytest.approx(nacl.volume / (len(nacl) / len(back)), rel=1e-3)
    assert back.matches(nacl)


def test_decoded_cells_scale_and_pad_exactly_as_their_structures():
    """The sampler rescales and denoises arrays and builds each Structure once; every step
    must give bit for bit what it gives on the Structure."""
    from invdesign.featurize.frames import padded_positions
    from invdesign.featurize.volume import AtomicVolumes

    rng = np.random.default_rng(2)
    volumes = AtomicVolumes({"Na": 23.1, "Cl": 20.4, "Ti": 17.0, "O": 11.2})
    cells = [decoded_cell([4.1, 5.2, 6.3, 80, 95, 110], z, rng.uniform(-0.5, 1.5, (len(z), 3)))
             for z in ([11, 17, 17, 11, 17], [22, 8, 8, 8], [8, 22])]
    structures = [c.to_structure() for c in cells]
    for cell, structure in zip(cells, structures, strict=True):
        assert list(cell.composition.items()) == list(structure.composition.items())
        assert np.all((cell.frac_coords >= 0) & (cell.frac_coords < 1))
    scaled_cells, scaled = volumes.rescale(cells), volumes.rescale(structures)
    for cell, structure in zip(scaled_cells, scaled, strict=True):
        np.testing.assert_array_equal(cell.to_structure().lattice.matrix,
                                      structure.lattice.matrix)
    for a, b in zip(padded_positions(scaled_cells), padded_positions(scaled), strict=True):
        np.testing.assert_array_equal(a, b)


def test_structure_from_arrays_is_the_plain_structure():
    lattice = Lattice.from_parameters(4.1, 5.2, 6.3, 80, 95, 110)
    numbers = np.array([11, 17, 17, 8])
    frac = np.random.default_rng(0).uniform(0, 1, (4, 3))
    fast, plain = structure_from_arrays(lattice, numbers, frac), Structure(lattice, numbers, frac)
    assert fast == plain
    assert fast.to(fmt="cif") == plain.to(fmt="cif")
    assert [site.specie.Z for site in fast] == numbers.tolist()


def test_lattice_matrices_and_their_scaling_are_pymatgens_bit_for_bit():
    rng = np.random.default_rng(3)
    params = np.c_[rng.uniform(2, 9, (300, 3)), rng.uniform(50, 130, (300, 3))]
    matrices, usable = lattice_matrices(params)
    assert 0.5 < usable.mean() < 1  # some angle triples close no cell
    volumes = rng.uniform(20, 300, 300)[usable]
    scaled = scaled_matrices(matrices[usable], volumes)
    for row, matrix, new, volume in zip(params[usable], matrices[usable], scaled, volumes,
                                        strict=True):
        lattice = Lattice.from_parameters(*row)
        np.testing.assert_array_equal(matrix, lattice.matrix)
        np.testing.assert_array_equal(new, lattice.scale(volume).matrix)
    bad = [[3, 3, -1, 90, 90, 90], [3, 3, 3, 90, 180, 90], [3, 3, 3, 120, 120, 120],
           [3, np.nan, 3, 90, 90, 90]]
    assert not lattice_matrices(bad)[1].any()


def test_degenerate_lattice_is_rejected():
    with pytest.raises(ValueError, match="out of range"):
        lattice_from_parameters([3, 3, -1, 90, 90, 90])
    with pytest.raises(ValueError, match=r"volume|range"):
        lattice_from_parameters([3, 3, 3, 120, 120, 120])


def test_alignment_recovers_any_origin_and_permutation(cu):
    frame = crystal_frame(cu.copy().make_supercell([2, 1, 1]))  # 8 atoms of one species
    rng = np.random.default_rng(0)
    origin = int(rng.integers(frame.n_atoms))
    perm = rng.permutation(frame.n_atoms - 1) + 1
    shifted = np.mod(frame.frac_coords - frame.frac_coords[origin], 1.0)
    others = np.delete(np.arange(frame.n_atoms), origin)
    pred = np.zeros((10, 3))
    pred[1:frame.n_atoms] = shifted[others][perm - 1] + 1e-3  # the decoder's slot order
    target = align(frame, pred)
    assert periodic_cost(pred[:frame.n_atoms], target).diagonal().max() < 1e-3
    assert species_blocks(np.array([38, 22, 8, 8, 8])) == [(0, 1), (1, 2), (2, 5)]


def test_alignment_keeps_species_in_their_slots():
    frame = crystal_frame(perovskite())
    pred = np.zeros((5, 3))
    target = align(frame, pred)
    assert target.shape == (5, 3)
    np.testing.assert_allclose(target[0], 0.0, atol=1e-6)  # Sr is the origin atom


def test_structure_archive_round_trip(tmp_path, nacl, si):
    path = write_structures(tmp_path / "ref.npz", [nacl, si], ["a", "b"])
    structures, ids = read_structures(path)
    assert ids == ["a", "b"]
    assert [len(s) for s in structures] == [8, 8]
    assert structures[0].matches(nacl) and structures[1].matches(si)


@pytest.fixture(scope="module")
def _cache() -> dict:
    return {}


@pytest.fixture
def trained(_cache, nacl, cu, si, tmp_path_factory):
    """(run, checkpoint folder, data file) of a tiny VAE trained once per module."""
    if not _cache:
        folder = tmp_path_factory.mktemp("vae")
        data = write_toy_dataset(folder / "toy.json", [nacl, cu, si])
        run = train_generator(data, TINY)
        _cache["run"] = (run, save_vae_run(run, folder / "model"), data)
    return _cache["run"]


def test_training_is_reproducible_with_a_seed(trained):
    _, _, data = trained
    state = train_generator(data, TINY).generator.model.state_dict()
    torch.manual_seed(12345)  # whatever the global state, the config's seed decides
    again = train_generator(data, TINY).generator.model.state_dict()
    assert all(torch.equal(state[k], v) for k, v in again.items())


def test_encoder_is_invariant_to_atom_order(trained, nacl):
    run, _, _ = trained
    model = run.generator.model.eval()
    order = np.random.default_rng(1).permutation(len(nacl))
    shuffled = Structure(nacl.lattice, [nacl[i].specie for i in order],
                         [nacl[i].frac_coords for i in order])
    graphs = featurize_structures([nacl, shuffled], GraphConfig())
    with torch.no_grad():
        mu, _ = model.encode(collate(graphs))
    torch.testing.assert_close(mu[0], mu[1], atol=1e-5, rtol=1e-5)


def test_checkpoint_reloads_with_identical_decoding(trained):
    run, folder, _ = trained
    loaded = Generator.load(folder)
    z = np.random.default_rng(0).standard_normal((6, loaded.config.latent)).astype(np.float32)
    a, b = run.generator.decode(z), loaded.decode(z)
    assert [x.formula if x else None for x in a] == [x.formula if x else None for x in b]
    card = json.loads((folder / "card.json").read_text())
    assert card["kind"] == "vae" and card["meta"]["split"]["method"] == "random"
    assert (folder / "reference.npz").is_file() and (folder / "learning_curve.png").is_file()
    assert (folder / "reference_properties.csv").is_file()


def test_sampling_is_seeded_and_honours_element_and_size_limits(trained):
    generator = trained[0].generator
    first = generator.sample(20, seed=3)[0]
    again = generator.sample(20, seed=3)[0]
    assert [s.formula if s else None for s in first] == [s.formula if s else None for s in again]
    limited = generator.sample(20, seed=3, elements=["Cu"], max_atoms=4)[0]
    for s in limited:
        if s is not None:
            assert {e.symbol for e in s.composition} == {"Cu"} and len(s) <= 4
    with pytest.raises(ValueError, match="vocabulary"):
        generator.sample(2, elements=["Au"])


def test_training_fits_a_latent_prior_that_is_saved_and_sampled(trained):
    run, folder, _ = trained
    generator = run.generator
    assert generator.latent_prior is not None
    report = generator.meta["latent_prior"]
    assert report["components"] == generator.latent_prior.n_components
    assert report["n_train"] > 0 and report["val_log_likelihood"]
    loaded = Generator.load(folder)
    assert (folder / "latent_prior.npz").is_file()
    a = generator.sample(12, seed=5, prior="fitted")
    b = loaded.sample(12, seed=5)  # "auto" uses the fitted prior
    np.testing.assert_allclose(a[1], b[1], rtol=1e-5, atol=1e-5)
    gaussian = loaded.sample(12, seed=5, prior="gaussian")[1]
    assert not np.allclose(gaussian, b[1])
    with pytest.raises(ValueError, match="prior must be"):
        loaded.sample(2, prior="uniform")
    loaded.latent_prior = None
    with pytest.raises(ValueError, match="no fitted latent prior"):
        loaded.sample(2, prior="fitted")
    assert all(s is None or len(s) for s in loaded.sample(4, seed=1)[0])


def test_latent_prior_is_fitted_on_an_older_checkpoints_split(trained, tmp_path):
    _, folder, data = trained
    older = Generator.load(folder)
    older.latent_prior = None
    older.save(tmp_path / "older")
    assert not (tmp_path / "older" / "latent_prior.npz").exists()
    report = fit_checkpoint_latent_prior(older, data)
    assert older.latent_prior is not None and report["n_val"] > 0
    assert older.latent_prior.latent == older.config.latent
    assert older.latent_prior.n_conditions == len(older.conditions)


def test_latent_prior_fits_the_refined_codes_the_decoder_reconstructs_from(trained):
    _, folder, data = trained
    generator = Generator.load(folder)
    train = split_structures(generator, data).train
    means = {}
    for steps in (0, 20):
        report = fit_checkpoint_latent_prior(generator, data, refine_steps=steps)
        assert report["refine_steps"] == steps
        prior = generator.latent_prior
        # at an EM fixed point the weighted component means are the data mean
        means[steps] = (prior.weights[:, None] * prior.means[:, :prior.latent]).sum(0)
        codes = generator.encode(train, refine_steps=steps)[0]
        np.testing.assert_allclose(means[steps], codes.mean(0), atol=1e-3)
    assert not np.allclose(means[0], means[20], atol=1e-3)


def test_conditions_set_requested_values_and_ranges(trained):
    generator = trained[0].generator
    rng = np.random.default_rng(0)
    y = generator.to_physical(generator.draw_conditions(50, {"K": 100.0}, rng))
    np.testing.assert_allclose(y[:, 0], 100.0, rtol=1e-4)
    y = generator.to_physical(generator.draw_conditions(50, {"K": (80.0, 120.0)}, rng))
    assert (y[:, 0] >= 80 - 1e-3).all() and (y[:, 0] <= 120 + 1e-3).all()
    with pytest.raises(KeyError, match="band_gap"):
        generator.draw_conditions(2, {"band_gap": 1.0}, rng)


def test_conditional_sampling_keeps_crystals_whose_reencoding_matches_the_request(trained):
    generator = trained[0].generator
    k = generator.condition_index("K")
    target = float(np.median(generator.to_physical(generator.model.condition_bank.numpy())[:, k]))

    def head_error(screen: int) -> float:
        structures = [s for s in generator.sample(40, {"K": target}, seed=4,
                                                  screen=screen)[0] if s is not None]
        head = generator.predict_conditions(generator.encode(structures)[0])[:, k]
        return float(np.mean(np.abs(np.log10(head / target))))

    assert head_error(8) < head_error(1)
    structures, z, y = generator.sample(40, {"K": (0.5 * target, target)}, seed=4)
    assert len(structures) == len(z) == len(y) == 40
    assert generator.sample(5, seed=4, screen=8)[1].shape[0] == 5  # unconditional: no screen
    with pytest.raises(ValueError, match="screen"):
        generator.sample(5, {"K": target}, screen=0)


def test_reconstruction_metrics_on_the_stored_test_split(trained):
    run, folder, data = trained
    loaded = Generator.load(folder)
    structures = held_out_structures(loaded, data)
    assert len(structures) == len(run.split.test)
    metrics = evaluate_reconstruction(loaded, structures)
    assert 0.0 <= metrics["match_rate"] <= 1.0 and metrics["n"] == len(structures)
    assert 0.0 <= metrics["amortised_match_rate"] <= 1.0 and metrics["refine_steps"] > 0
    assert metrics["match_rate"] <= metrics["match_rate_any_validity"] <= 1.0
    assert metrics["ground_truth_valid"] == 1.0  # NaCl, Cu and Si pass CDVAE's checks


def test_latent_refinement_lowers_the_reconstruction_error(trained):
    generator = trained[0].generator
    structures = held_out_structures(generator, trained[2])
    frames = crystal_frames(structures)
    mu, _ = generator.encode(structures)
    z0 = torch.from_numpy(mu)
    refined = refine_latent(generator.model, frames, z0, steps=100)

    def error(z):
        with torch.no_grad():
            model = generator.model
            return reconstruction_error(model, frames, model.decode(z, model.predict_conditions(z)))

    before, after = error(z0), error(refined)
    assert (after < before - 0.1).all(), (before, after)  # a 4-epoch toy: modest gains
    again, _ = generator.encode(structures, refine_steps=100)
    np.testing.assert_allclose(again, refined.numpy(), atol=1e-5)
    assert all(p.requires_grad for p in generator.model.parameters())


def test_composition_decoding_follows_the_number_of_elements():
    logits = np.full((2, 4, 4), -5.0)  # 2 crystals, 4 elements, counts 0..3
    logits[:, :, 0] = 0.0  # absent is likeliest for every element ...
    logits[:, 0, 2] = 1.0  # ... but element 0 twice
    logits[:, 1, 1] = -0.5  # element 1 once, less likely than absent
    assert composition_from_logits(logits)[0].tolist() == [2, 0, 0, 0]
    counts = composition_from_logits(logits, n_species=np.array([2, 1]))
    assert counts.tolist() == [[2, 1, 0, 0], [2, 0, 0, 0]]
    logits[:, 1, 3] = 0.9  # element 1: three atoms, else one
    capped = composition_from_logits(logits, n_species=np.array([2, 2]), max_total=3)
    assert capped.tolist() == [[2, 1, 0, 0]] * 2  # 2 + 3 atoms cut to the likeliest 3


def test_rejected_compositions_give_way_to_the_most_probable_accepted_one():
    """Columns are Na, K, Cl, O. The decoder's favourite, KNa (2 cations), is not charge
    balanced; the next most probable compositions are tried in order of probability."""
    vocab = np.array([11, 19, 17, 8])
    logits = np.full((1, 4, 4), -6.0)
    logits[0, :, 0] = 0.0
    logits[0, 0, 1] = 2.0  # Na: present, once
    logits[0, 1, 1] = 1.5  # K: present, once
    logits[0, 1, 2] = -7.0  # K2 less likely than Na2
    logits[0, 2, 1] = 1.2  # Cl: once, less likely than K
    logits[0, 3, 2] = 0.5  # O: twice, least likely
    logits[0, 3, 1] = 0.4
    plain = composition_from_logits(logits, np.array([2]))
    assert plain.tolist() == [[1, 1, 0, 0]]
    alternatives = alternative_compositions(logits[0], 2, max_total=None)
    assert [a.tolist() for a in alternatives[:3]] == [[1, 1, 0, 0], [1, 0, 1, 0], [0, 1, 1, 0]]

    def charge_neutral(counts: dict[int, int]) -> bool:
        charge = {11: 1, 19: 1, 17: -1, 8: -2}
        return sum(charge[z] * n for z, n in counts.items()) == 0

    fixed = composition_from_logits(logits, np.array([2]), accept=charge_neutral, vocab=vocab)
    assert fixed.tolist() == [[1, 0, 1, 0]]  # NaCl
    logits[0, 2, 1:] = -np.inf  # Cl not allowed: Na2O is the best neutral one left
    fixed = composition_from_logits(logits, np.array([2]), accept=charge_neutral, vocab=vocab)
    assert fixed.tolist() == [[2, 0, 0, 1]]
    nothing = composition_from_logits(logits, np.array([2]), accept=lambda _: False,
                                      vocab=vocab)
    assert nothing.tolist() == plain.tolist()  # none accepted: the decoder's choice stays
    capped = alternative_compositions(logits[0], 2, max_total=2)
    assert all(a.sum() <= 2 and a[2] == 0 for a in capped)


def test_trained_model_predicts_the_number_of_elements(trained):
    generator = trained[0].generator
    assert generator.config.max_species == 2  # NaCl and Cu in the toy data
    structures = generator.sample(20, seed=0)[0]
    z, _ = generator.encode(held_out_structures(generator, trained[2]))
    with torch.no_grad():
        zt = torch.from_numpy(z)
        out = generator.model.decode(zt, generator.model.predict_conditions(zt))
    assert out.species_logits.shape == (len(z), 2)
    assert all(s is None or len(s.composition) <= 2 for s in structures)


def test_species_head_is_fitted_on_a_frozen_older_model(trained):
    run = trained[0]
    model = run.generator.model
    old = CrystalVAE(replace(model.config, max_species=0))
    old.condition_bank = model.condition_bank.clone()
    old.load_state_dict({k: v for k, v in model.state_dict().items()
                         if not k.startswith("species_head.")})
    generator = Generator(model=old, graph_config=run.generator.graph_config,
                          conditions=run.generator.conditions, meta=run.generator.meta)
    train, val = checkpoint_examples(generator, trained[2])
    new, accuracy = fit_species_head(old, train, val, epochs=5)
    assert new.config.max_species == 2 and 0.0 <= accuracy <= 1.0
    for name, value in old.state_dict().items():
        torch.testing.assert_close(new.state_dict()[name], value)


def _same_samples(first: list, second: list) -> bool:
    return all((a is None and b is None) or (a is not None and b is not None
                                             and np.allclose(a.frac_coords, b.frac_coords))
               for a, b in zip(first, second, strict=True))


def test_denoiser_is_trained_on_the_split_saved_and_used_by_sampling(trained, tmp_path):
    _, folder, data = trained
    generator = Generator.load(folder)
    z = np.zeros((2, generator.config.latent), np.float32)
    with pytest.raises(ValueError, match="no denoiser"):
        generator.decode(z, denoise=True)
    config = DenoiserConfig(hidden=16, n_layers=1, n_gaussians=8, k=4, refine_steps=3,
                            refine_noise=True)
    history = train_checkpoint_denoiser(generator, data, config=config,
                                        train_config=DenoiserTrainConfig(epochs=2))
    assert len(history.val_loss) == 2
    card = generator.meta["denoiser"]
    assert card["n_train"] > 0 and card["n_val"] > 0 and card["config"]["k"] == 4
    first = {k: v.clone() for k, v in generator.denoiser.state_dict().items()}
    train_checkpoint_denoiser(generator, data, config=config, resume=True,
                              train_config=DenoiserTrainConfig(epochs=1, seed=1))
    assert generator.meta["denoiser"]["resumed_from"]["epochs_run"] == 2
    assert generator.denoiser.config == config
    assert any(not torch.equal(first[k], v) for k, v in generator.denoiser.state_dict().items())
    again = Generator.load(generator.save(tmp_path / "model"))
    assert again.denoiser is not None and again.denoiser.config == config
    plain = again.sample(8, seed=0, denoise=False)[0]  # 8: not all of them single atoms
    refined = again.sample(8, seed=0)[0]  # the checkpoint's denoiser, by default
    moved = 0.0
    for a, b in zip(plain, refined, strict=True):
        assert (a is None) == (b is None)
        if a is not None:
            assert a.composition == b.composition
            np.testing.assert_allclose(a.lattice.matrix, b.lattice.matrix, atol=1e-4)
            moved += float(np.abs(a.frac_coords - b.frac_coords).sum())
    assert moved > 0
    # more passes down the ladder move the atoms further; the card's default is one pass
    assert _same_samples(again.sample(8, seed=0, refine_passes=1)[0], refined)
    assert not _same_samples(again.sample(8, seed=0, refine_passes=3)[0], refined)
    with pytest.raises(ValueError, match="denoising off"):
        again.sample(3, seed=0, denoise=False, refine_passes=2)
    with pytest.raises(ValueError, match="at least 1"):
        again.sample(3, seed=0, refine_passes=0)
    with pytest.raises(ValueError, match="cannot refine cells"):
        again.sample(3, seed=0, refine_cell=True)
    # a denoiser that learnt cell strains refines the cell unless asked to keep it
    shipped = again.denoiser
    widened = Denoiser(replace(config, lattice_noise=0.1)).eval()
    widened.load_widened(shipped)  # same position predictions, a zero cell head
    with torch.no_grad():
        widened.strain_iso.bias.fill_(-0.5)  # sees every cell compressed, so expands it
    again.denoiser = widened
    grown = again.sample(8, seed=0)[0]
    kept = again.sample(8, seed=0, refine_cell=False)[0]
    assert _same_samples(kept, refined)
    for a, b, c in zip(plain, grown, kept, strict=True):
        if a is not None:
            assert b.volume > 1.01 * a.volume
            np.testing.assert_allclose(c.lattice.matrix, a.lattice.matrix, atol=1e-4)
    again.denoiser = shipped
    heard = []
    again.sample(8, seed=0, progress=lambda *report: heard.append(report))
    present = sum(s is not None for s in refined)
    assert heard[0] == ("denoising", 0, present) and heard[-1] == ("denoising", present, present)
    # a latent-refined reconstruction is fitted to its crystal: not denoised unless asked
    crystal = [next(s for s in plain if s is not None)]
    # a reconstruction takes one pass down the ladder, whatever the card gives sampling
    again.denoiser.config = replace(again.denoiser.config, refine_passes=3)
    several = held_out_structures(again, data)
    one_shot = again.reconstruct(several, refine_steps=0)
    mu, _ = again.encode(several, refine_steps=0)
    assert _same_samples(one_shot, again.denoise(again.decode(mu, denoise=False), passes=1))
    assert not _same_samples(one_shot, again.decode(mu))
    default = again.reconstruct(crystal, refine_steps=2)[0]
    undenoised = again.reconstruct(crystal, refine_steps=2, denoise=False)[0]
    assert (default is None) == (undenoised is None)
    if default is not None:
        np.testing.assert_allclose(default.frac_coords, undenoised.frac_coords)
    # parts fitted after training are stored without rewriting the VAE's weights
    weights = (tmp_path / "model" / "weights.pt").read_bytes()
    again.meta["note"] = "added later"
    again.save(tmp_path / "model", weights=False)
    assert (tmp_path / "model" / "weights.pt").read_bytes() == weights
    assert Generator.load(tmp_path / "model").meta["note"] == "added later"
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        again.save(tmp_path / "empty", weights=False)
    again.denoiser = None
    assert not (Path(again.save(tmp_path / "model")) / "denoiser.pt").exists()


def test_atomic_volumes_scale_decoded_cells_and_round_trip(trained, tmp_path, nacl, cu):
    from invdesign.featurize.volume import AtomicVolumes

    # additive volumes recovered exactly from crystals built to obey them
    kcl = Structure(Lattice.cubic(6.29), ["K", "Cl"] * 4, nacl.frac_coords)
    volumes = AtomicVolumes.fit([nacl, cu, kcl])
    assert volumes.predict(Composition("Cu4")) == pytest.approx(cu.volume, rel=1e-6)
    assert volumes.predict(Composition("Na4Cl4")) == pytest.approx(nacl.volume, rel=1e-3)
    assert math.isnan(volumes.predict(Composition("Fe")))
    squeezed = nacl.copy()
    squeezed.scale_lattice(0.5 * nacl.volume)
    scaled, unknown, missing = volumes.rescale([squeezed, Structure(
        Lattice.cubic(3.0), ["Fe"], [[0, 0, 0]]), None])
    assert scaled.volume == pytest.approx(volumes.predict(nacl.composition))
    assert np.allclose(scaled.frac_coords, squeezed.frac_coords)
    assert unknown.volume == pytest.approx(27.0) and missing is None

    _, folder, data = trained
    generator = Generator.load(folder)
    generator.volumes = AtomicVolumes.fit(split_structures(generator, data).train)
    out = tmp_path / "with-volumes"
    shutil.copytree(folder, out)
    generator.save(out)
    loaded = Generator.load(out)
    assert loaded.volumes == generator.volumes
    for s in loaded.sample(6, seed=1)[0]:
        if s is not None and math.isfinite(loaded.volumes.predict(s.composition)):
            assert s.volume == pytest.approx(loaded.volumes.predict(s.composition), rel=1e-6)
    loaded.volumes = None
    loaded.save(out)
    assert not (out / "atomic_volumes.json").exists()


def test_sampling_keeps_to_the_stoichiometric_patterns_the_checkpoint_records(trained,
                                                                              tmp_path):
    from invdesign.featurize.stoichiometry import (
        StoichiometryPatterns,
        stoichiometry_pattern,
        structure_counts,
    )

    _, folder, _ = trained
    generator = Generator.load(folder)
    with pytest.raises(ValueError, match="no stoichiometric patterns"):
        generator.sample(2, stoichiometry=True)

    def patterns_of(samples):
        return [stoichiometry_pattern(structure_counts(s)) for s in samples if s is not None]

    raw = patterns_of(generator.sample(40, seed=2, denoise=False)[0])
    common = max(set(raw), key=raw.count)
    assert len(set(raw)) > 1  # the toy decoder draws several kinds of formula
    kept = StoichiometryPatterns(frozenset({common}))
    generator.stoichiometries = kept
    out = tmp_path / "with-patterns"
    shutil.copytree(folder, out)
    generator.save(out, weights=False)
    loaded = Generator.load(out)
    assert loaded.stoichiometries == kept
    samples = loaded.sample(40, seed=2, denoise=False)[0]  # default: the card's patterns
    assert patterns_of(samples).count(common) > raw.count(common)
    assert patterns_of(loaded.sample(40, seed=2, denoise=False, stoichiometry=False)[0]) == raw
    loaded.stoichiometries = None
    loaded.save(out, weights=False)
    assert not (out / "stoichiometries.json").exists()


def test_best_of_keeps_the_draw_that_encodes_back_closest_to_its_code(trained, nacl, cu, si):
    generator = Generator.load(trained[1])
    mu, _ = generator.encode([nacl, cu, si])
    far = mu + 50.0
    # groups of two: (far, exact), (exact, far), (None, far)
    z = np.stack([far[0], mu[0], mu[1], far[1], mu[2], far[2]])
    codes = generator.reencode([nacl, nacl, cu, cu, None, si])
    assert np.isnan(codes[4]).all() and np.isfinite(np.delete(codes, 4, axis=0)).all()
    chosen = generator.closest_reencodings(codes, z, 2)
    assert chosen.tolist() == [1, 2, 5]

    assert generator.best_of == 1  # nothing in the card
    plain = generator.sample(12, seed=5, denoise=False)
    assert [s.formula if s else None for s in plain[0]] == [
        s.formula if s else None for s in generator.sample(12, seed=5, denoise=False,
                                                           best_of=1)[0]]
    generator.meta["sampling"] = {"best_of": 3}
    structures, z_kept, y = generator.sample(12, seed=5, denoise=False)
    assert len(structures) == len(z_kept) == len(y) == 12
    again = generator.sample(12, seed=5, denoise=False, best_of=3)[0]
    assert [s.formula if s else None for s in structures] == [s.formula if s else None
                                                               for s in again]
    with pytest.raises(ValueError, match="best_of must be >= 1"):
        generator.sample(2, best_of=0)


def test_encoding_in_worker_processes_gives_the_same_codes(trained, nacl, cu, si,
                                                           monkeypatch):
    import invdesign.generator as generator_module

    generator = Generator.load(trained[1])
    structures = [nacl, cu, si, nacl, cu]
    mu, logvar = generator.encode(structures, batch_size=2)
    monkeypatch.setattr(generator_module, "PARALLEL_MIN_ENCODE", 1)
    mu2, logvar2 = generator.encode(structures, batch_size=2, n_jobs=2)
    np.testing.assert_array_equal(mu, mu2)
    np.testing.assert_array_equal(logvar, logvar2)
