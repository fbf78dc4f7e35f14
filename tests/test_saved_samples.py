"""Samples saved before their checks: lossless, and only returned for the same arguments."""

import numpy as np

from invdesign.design.saved_samples import (
    META_FILE,
    checkpoint_fingerprint,
    clear_samples,
    load_samples,
    save_samples,
)

KEY = {"model": "toy", "n": 3, "seed": 0, "conditions": {"K": [100.0, 200.0]}}


def test_round_trip_is_exact_and_keeps_failed_rows(tmp_path, nacl, si):
    requested = np.array([[150.0], [120.0], [180.0]])
    save_samples(tmp_path, KEY, [nacl, None, si], requested)
    structures, got = load_samples(tmp_path, dict(KEY))
    assert structures[1] is None
    for before, after in ((nacl, structures[0]), (si, structures[2])):
        np.testing.assert_array_equal(after.lattice.matrix, before.lattice.matrix)
        np.testing.assert_array_equal(after.frac_coords, before.frac_coords)
        assert after.atomic_numbers == before.atomic_numbers
    np.testing.assert_array_equal(got, requested)


def test_other_arguments_broken_files_and_clearing_give_nothing(tmp_path, nacl):
    save_samples(tmp_path, KEY, [nacl], np.zeros((1, 0)))
    assert load_samples(tmp_path, {**KEY, "seed": 1}) is None
    (tmp_path / META_FILE).write_text("{not json")
    assert load_samples(tmp_path, KEY) is None
    clear_samples(tmp_path)
    assert not any(tmp_path.iterdir())
    assert load_samples(tmp_path, KEY) is None


def test_checkpoint_fingerprint_follows_its_files(tmp_path):
    (tmp_path / "weights.pt").write_bytes(b"a")
    first = checkpoint_fingerprint(tmp_path)
    assert checkpoint_fingerprint(tmp_path) == first
    (tmp_path / "weights.pt").write_bytes(b"ab")
    assert checkpoint_fingerprint(tmp_path) != first
