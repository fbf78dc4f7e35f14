"""CDVAE-standard metrics: coverage, EMDs, reconstruction match rate and RMSE."""

from __future__ import annotations

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure

from invdesign.evaluate import (
    COMPOSITION_FP_SIZE,
    COV_CUTOFFS,
    STRUCTURE_FP_SIZE,
    cov,
    cov_cutoffs,
    emd_density,
    emd_n_elements,
    fingerprint_structures,
    generation_metrics,
    match_rate_and_rmse,
    rms_distances,
    sample_scores,
    scale_composition_fingerprints,
)


def perovskite(a: float, A: str, B: str, X: str) -> Structure:
    """Cubic ABX3 perovskite (5 atoms)."""
    coords = [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]]
    return Structure(Lattice.cubic(a), [A, B, X, X, X], coords)


def cscl(a: float, A: str, B: str) -> Structure:
    """CsCl-type cell (2 atoms)."""
    return Structure(Lattice.cubic(a), [A, B], [[0, 0, 0], [0.5, 0.5, 0.5]])


def simple_cubic(a: float, element: str) -> Structure:
    """One atom in a cubic cell."""
    return Structure(Lattice.cubic(a), [element], [[0, 0, 0]])


REFERENCE = [perovskite(3.905, "Sr", "Ti", "O"), perovskite(4.01, "Ba", "Ti", "O"),
             perovskite(3.79, "Ca", "Ti", "O"), cscl(4.12, "Cs", "Cl")]
DIFFERENT = [simple_cubic(2.4, "Cu"), simple_cubic(3.35, "Po"), cscl(2.9, "Fe", "Al")]


@pytest.fixture(scope="module")
def reference_fps():
    pytest.importorskip("matminer")
    return fingerprint_structures(REFERENCE)


def test_fingerprints_shapes_and_failures(reference_fps):
    assert reference_fps.structure.shape == (len(REFERENCE), STRUCTURE_FP_SIZE)
    assert reference_fps.composition.shape == (len(REFERENCE), COMPOSITION_FP_SIZE)
    assert reference_fps.ok.all()
    empty = Structure(Lattice.cubic(3.0), [], [])
    failed = fingerprint_structures([None, empty])
    assert not failed.ok.any()
    assert np.isnan(failed.structure).all() and np.isnan(failed.composition).all()
    assert failed.errors[0] == "no structure" and "no sites" in failed.errors[1]


def test_cells_too_dense_for_a_crystal_get_no_fingerprint_instead_of_exhausting_memory():
    pytest.importorskip("matminer")
    tiny = Structure(Lattice.cubic(0.02), ["H"] * 3, [[0, 0, 0], [0.3, 0.3, 0.3], [0.6, 0, 0]])
    dense = Structure(Lattice.cubic(1.0), ["Li"] * 20, np.random.default_rng(0).random((20, 3)))
    fps = fingerprint_structures([tiny, dense, REFERENCE[0]])
    assert fps.ok.tolist() == [False, False, True]
    assert "small lattice" in fps.errors[0] and "too dense" in fps.errors[1]


def test_identical_sets_full_coverage_zero_emd(reference_fps):
    metrics = generation_metrics(REFERENCE, REFERENCE, "perov_5", n_valid_samples=None,
                                 sample_fingerprints=reference_fps,
                                 reference_fingerprints=reference_fps)
    assert metrics["cov_r"] == 1.0 and metrics["cov_p"] == 1.0
    assert metrics["emd_density"] == pytest.approx(0.0, abs=1e-12)
    assert metrics["emd_n_elements"] == pytest.approx(0.0, abs=1e-12)
    assert metrics["struct_valid"] == metrics["comp_valid"] == metrics["valid"] == 1.0


def test_different_structures_give_low_coverage(reference_fps):
    metrics = generation_metrics(DIFFERENT, REFERENCE, "perov_5", n_valid_samples=None,
                                 reference_fingerprints=reference_fps)
    assert metrics["cov_r"] == 0.0 and metrics["cov_p"] == 0.0
    assert metrics["emd_n_elements"] > 0.5


def test_sample_scores_count_repeats_known_crystals_and_failed_samples(reference_fps):
    """One benchmark row: a repeat is not unique, a training crystal is not novel, a failed
    sample (None) counts in the all-sample rates but not in the per-decoded ones."""
    samples = [REFERENCE[0], REFERENCE[0].copy(), DIFFERENT[2], None]
    scores = sample_scores(samples, REFERENCE, "perov_5", reference=[REFERENCE[0]],
                           held_out_fingerprints=reference_fps)
    assert scores["unique"] == pytest.approx(2 / 3)  # of the 3 decoded samples
    assert scores["novel"] == pytest.approx(1 / 3)  # only the FeAl cell is new
    assert scores["valid_unique_novel"] == pytest.approx(1 / 4)  # of all 4 samples
    assert scores["struct_valid"] == pytest.approx(3 / 4)
    assert scores["cov_p"] == pytest.approx(2 / 4)  # the SrTiO3 pair lies on a test crystal


def test_none_sample_is_invalid_and_counts_in_cov_p(reference_fps):
    samples = [*REFERENCE, None]
    fps = fingerprint_structures([None])
    sample_fps = type(fps)(np.vstack([reference_fps.structure, fps.structure]),
                           np.vstack([reference_fps.composition, fps.composition]),
                           (*reference_fps.errors, *fps.errors))
    metrics = generation_metrics(samples, REFERENCE, "carbon_24", n_valid_samples=None,
                                 sample_fingerprints=sample_fps,
                                 reference_fingerprints=reference_fps)
    assert metrics["cov_r"] == 1.0
    assert metrics["cov_p"] == pytest.approx(4 / 5)
    assert metrics["struct_valid"] == pytest.approx(4 / 5)
    assert metrics["n_valid"] == 4 and metrics["n_fingerprint_failed"] == 1


def test_cov_thresholds_each_distance_and_counts_failed_rows():
    rng = np.random.default_rng(0)
    gt_s = rng.random((3, STRUCTURE_FP_SIZE))
    gt_c = rng.random((3, COMPOSITION_FP_SIZE)) * 10
    pred_s = np.vstack([gt_s[0] + 0.01, gt_s[1] + 1.0, np.full(STRUCTURE_FP_SIZE, np.nan)])
    pred_c = np.vstack([gt_c[0], gt_c[1], np.full(COMPOSITION_FP_SIZE, np.nan)])
    cov_r, cov_p = cov(pred_s, pred_c, gt_s, gt_c, 0.2, 4.0)
    assert cov_r == pytest.approx(1 / 3)  # only gt 0 has a sample within both cutoffs
    assert cov_p == pytest.approx(1 / 3)  # the failed row stays in the denominator


def test_cov_takes_nearest_structure_and_composition_separately():
    """As CDVAE: the nearest sample in each space may differ and still count as covered."""
    gt_s, gt_c = np.zeros((1, STRUCTURE_FP_SIZE)), np.full((1, COMPOSITION_FP_SIZE), 50.0)
    pred_s = np.vstack([gt_s[0], gt_s[0] + 5.0])  # sample 0 matches the structure only
    pred_c = np.vstack([gt_c[0] + 500.0, gt_c[0]])  # sample 1 matches the composition only
    assert cov(pred_s, pred_c, gt_s, gt_c, 0.2, 4.0) == (1.0, 0.0)


def test_composition_scaling_replaces_nan_by_zero():
    raw = np.full((1, COMPOSITION_FP_SIZE), np.nan)
    assert (scale_composition_fingerprints(raw) == 0).all()
    with pytest.raises(ValueError, match="132"):
        scale_composition_fingerprints(np.zeros((1, 5)))


def test_emd_of_shifted_distributions_equals_shift():
    densities = np.random.default_rng(1).normal(5.0, 1.0, 200)
    assert emd_density(densities + 0.7, densities) == pytest.approx(0.7)
    assert emd_n_elements([1, 2, 3], [2, 3, 4]) == pytest.approx(1.0)
    assert emd_density(REFERENCE, REFERENCE) == 0.0


def test_unknown_dataset_lists_known_ones():
    with pytest.raises(ValueError, match=r"carbon_24.*mp_20.*perov_5"):
        cov_cutoffs("perov5")
    with pytest.raises(ValueError, match="known"):
        generation_metrics(REFERENCE, REFERENCE, "mp-20")
    assert COV_CUTOFFS["mp_20"] == (0.4, 10.0)


def test_reconstruction_identical_sets_match_exactly():
    result = match_rate_and_rmse(REFERENCE, REFERENCE)
    assert result["match_rate"] == 1.0
    assert result["rmse"] == pytest.approx(0.0, abs=1e-8)


def test_small_perturbation_matches_with_small_rmse():
    gt = perovskite(3.905, "Sr", "Ti", "O")
    pred = gt.copy()
    pred.translate_sites([2], [0.0, 0.0, 0.03], frac_coords=True)
    rms = rms_distances([pred], [gt])[0]
    assert 0.0 < rms < 0.1


def test_none_and_invalid_predictions_are_misses():
    gt = [perovskite(3.905, "Sr", "Ti", "O"), cscl(4.12, "Cs", "Cl"), cscl(4.12, "Cs", "Cl")]
    squashed = Structure(Lattice.cubic(4.12), ["Cs", "Cl"], [[0, 0, 0], [0.05, 0, 0]])
    result = match_rate_and_rmse([gt[0], None, squashed], gt)
    assert result["match_rate"] == pytest.approx(1 / 3) and result["n_matched"] == 1
    assert result["rmse"] == pytest.approx(0.0, abs=1e-8)
    with pytest.raises(ValueError, match="2 predictions for 3"):
        match_rate_and_rmse(gt[:2], gt)


def test_no_match_gives_nan_rmse():
    result = match_rate_and_rmse([None], [cscl(4.12, "Cs", "Cl")])
    assert result["match_rate"] == 0.0 and np.isnan(result["rmse"])
