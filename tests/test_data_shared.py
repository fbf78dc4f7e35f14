"""Loading the developers' shared datasets (skipped when ../shared/data is absent)."""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from invdesign.data import CrystalDataset, composition_split, load_dataset

MP_ELASTIC = "mp_binary_elasticity/mp-binary-pbe-elasticity-dev.json.gz"
ALEXANDRIA = "alexandria_binary_phonon/alexandria-binary-pbe-phonon-2025.1.json.gz"


@pytest.fixture(scope="module")
def mp_elastic(shared_data: Path) -> CrystalDataset:
    return load_dataset(shared_data / MP_ELASTIC)


def test_mp_elasticity_loads_all_rows(mp_elastic: CrystalDataset) -> None:
    assert mp_elastic.summary.n_read == 3353
    assert len(mp_elastic) == mp_elastic.summary.n_kept == 3353 - len(mp_elastic.summary.skipped)
    assert len(mp_elastic) > 3300
    assert mp_elastic.property_names == ["bulk_modulus_vrh", "shear_modulus_vrh"]
    moduli = mp_elastic.targets(["bulk_modulus_vrh", "shear_modulus_vrh"])
    assert np.isfinite(moduli).all() and (moduli > 0).all()
    assert mp_elastic[0].id.startswith("mp-")


def test_mp_elasticity_composition_split(mp_elastic: CrystalDataset) -> None:
    split = composition_split(mp_elastic, (0.8, 0.1, 0.1), seed=0)
    formulas = [s.composition.reduced_formula for s in mp_elastic.structures]
    parts = [{formulas[i] for i in p} for p in (split.train, split.val, split.test)]
    assert not (parts[0] & parts[1] or parts[0] & parts[2] or parts[1] & parts[2])
    assert abs(len(split.val) - 0.1 * len(mp_elastic)) < 20


def test_alexandria_loads_and_string_structures(shared_data: Path, tmp_path: Path) -> None:
    path = shared_data / ALEXANDRIA
    ds = load_dataset(path)
    assert ds.summary.n_read == 1170 and len(ds) > 1150
    heat = ds.targets(["heat_capacity"])[:, 0]
    assert np.isfinite(heat).all() and (heat > 0).all()
    # The same records with the structure stored as a Python-repr string (single quotes).
    with gzip.open(path, "rt") as fh:
        records = json.load(fh)[:50]
    for r in records:
        if not isinstance(r["structure"], str):
            r["structure"] = repr(r["structure"])
    copy = tmp_path / "alexandria-strings.json.gz"
    with gzip.open(copy, "wt") as fh:
        json.dump(records, fh)
    strings = load_dataset(copy)
    assert strings.ids == ds.ids[: len(strings)] and len(strings) >= 49
    assert strings[0].structure == ds[0].structure


def _head_csv(source: Path, n_rows: int, tmp_path: Path) -> Path:
    head = tmp_path / source.name
    pd.read_csv(source, nrows=n_rows, dtype=str, keep_default_na=False).to_csv(head, index=False)
    return head


def test_perov5_head(shared_data: Path, tmp_path: Path) -> None:
    ds = load_dataset(_head_csv(shared_data / "perov_5/val.csv", 300, tmp_path))
    assert ds.summary.n_read == 300 and len(ds) == 300
    assert ds.property_names == ["heat_all", "heat_ref", "dir_gap", "ind_gap"]
    assert {len(s) for s in ds.structures} == {5}
    assert np.isfinite(ds.targets(ds.property_names)).all()


def test_carbon24_head(shared_data: Path, tmp_path: Path) -> None:
    ds = load_dataset(_head_csv(shared_data / "carbon_24/val.csv", 200, tmp_path))
    assert len(ds) == 200 and ds.property_names == ["energy_per_atom"]
    assert all(s.composition.reduced_formula == "C" for s in ds.structures)
    assert all(6 <= len(s) <= 24 for s in ds.structures)


@pytest.mark.slow
@pytest.mark.parametrize(("name", "n_rows"), [("perov_5/val.csv", 3787),
                                              ("carbon_24/val.csv", 2032)])
def test_cdvae_full(shared_data: Path, name: str, n_rows: int) -> None:
    ds = load_dataset(shared_data / name)
    assert ds.summary.n_read == n_rows
    assert len(ds) == n_rows - len(ds.summary.skipped)


def test_alpha_target_set_is_the_shared_readme_list(shared_data: Path) -> None:
    """`Reference.listed` marks exactly the crystals whose thermal expansion the README lists."""
    from invdesign.data.examples import REFERENCES

    text = (shared_data / "README.md").read_text()
    line = text[text.index("linear thermal expansion"):].split("Bulk moduli")[0]
    aliases = {"diamond": "C-diamond"}
    named = {aliases.get(w, w) for w in re.findall(r"([A-Z][A-Za-z0-9]*|diamond) ~?[0-9.]+", line)}
    listed = {r.name for r in REFERENCES if r.listed}
    assert listed == named, f"README lists {sorted(named)}, examples mark {sorted(listed)}"
    for ref in REFERENCES:
        if ref.listed:
            value = re.search(rf"{'diamond' if ref.name == 'C-diamond' else ref.name} ~?([0-9.]+)",
                              line)
            assert float(value.group(1)) == pytest.approx(ref.thermal_expansion)
