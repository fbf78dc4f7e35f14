"""Readers and row validation of `invdesign.data`, on small files written into tmp_path."""

from __future__ import annotations

import gzip
import json
import logging
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pymatgen.core import Lattice, Structure
from pymatgen.io.cif import CifWriter
from pymatgen.io.vasp import Poscar

from invdesign.data import CrystalDataset, load_dataset
from invdesign.data.parsing import RowError
from invdesign.data.validate import check_structure


def _cif(structure: Structure) -> str:
    return str(CifWriter(structure))


def _close_pair() -> Structure:
    """Two Na atoms 0.2 Å apart."""
    return Structure(Lattice.cubic(4.0), ["Na", "Na"], [[0, 0, 0], [0.05, 0, 0]])


def _reason(dataset: CrystalDataset, needle: str) -> str:
    """The reason recorded for the skipped row whose label contains `needle`."""
    hits = [why for row, why in dataset.summary.skipped if needle in row]
    assert len(hits) == 1, dataset.summary.skipped
    return hits[0]


# --- CDVAE CSV ------------------------------------------------------------------------------

@pytest.fixture
def cdvae_csv(tmp_path: Path, nacl, si, cu) -> Path:
    rows = [
        (100, _cif(nacl), "NaCl", 1.0, "5.0"),
        (101, _cif(si), "Si", "", "abc"),  # missing + non-numeric -> NaN, row kept
        (102, _cif(cu), "Cu", 0.5, "0"),
        (103, "data_broken\nthis is not a CIF at all\n", "?", 1.0, "1"),
        (104, _cif(_close_pair()), "Na", 1.0, "1"),
        (105, _cif(nacl).replace("Cl  Cl", "Xx  Xx"), "NaXx", 1.0, "1"),
    ]
    frame = pd.DataFrame(rows, columns=["material_id", "cif", "formula", "heat_all", "gap"],
                         index=[7, 8, 9, 10, 11, 12])
    path = tmp_path / "val.csv"
    frame.to_csv(path)  # writes an unnamed leading index column, like CDVAE's files
    return path


def test_csv_keeps_good_rows_and_nan_labels(cdvae_csv: Path) -> None:
    ds = load_dataset(cdvae_csv)
    assert ds.ids == ["100", "101", "102"]
    assert ds.property_names == ["heat_all", "gap"]
    assert ds[0].properties == {"heat_all": 1.0, "gap": 5.0}
    assert math.isnan(ds[1].properties["heat_all"]) and math.isnan(ds[1].properties["gap"])
    assert ds[2].structure.composition.reduced_formula == "Cu"
    assert ds.targets(["heat_all"]).shape == (3, 1)


def test_csv_summary_names_rows_and_reasons(cdvae_csv: Path) -> None:
    ds = load_dataset(cdvae_csv)
    summary = ds.summary
    assert (summary.n_read, summary.n_kept, len(summary.skipped)) == (6, 3, 3)
    assert summary.reasons == {"malformed structure": 1, "atoms too close": 1,
                               "unknown element": 1}
    assert _reason(ds, "val.csv row 3 (id=103)").startswith("malformed structure")
    assert _reason(ds, "val.csv row 4 (id=104)") == "atoms too close: 0.20 A"
    assert _reason(ds, "val.csv row 5 (id=105)") == "unknown element: Xx"
    assert "skipped 3" in str(summary)


def test_csv_options(cdvae_csv: Path) -> None:
    ds = load_dataset(cdvae_csv, properties=["gap"], max_atoms=5)
    assert ds.ids == ["102"]  # NaCl and Si conventional cells have 8 atoms
    assert ds[0].properties == {"gap": 0.0}
    assert ds.summary.reasons["too many atoms"] == 2
    assert _reason(ds, "id=100") == "too many atoms: 8 > 5"
    with pytest.raises(ValueError, match="no_such_property"):
        load_dataset(cdvae_csv, properties=["no_such_property"])
    with pytest.raises(ValueError, match="formulaX"):
        load_dataset(cdvae_csv, id_field="formulaX")


def test_csv_duplicate_ids_made_unique(tmp_path: Path, nacl, cu, caplog) -> None:
    path = tmp_path / "dup.csv"
    pd.DataFrame({"material_id": ["a", "a", "a"], "cif": [_cif(nacl), _cif(cu), _cif(nacl)],
                  "e": [1, 2, 3]}).to_csv(path, index=False)
    with caplog.at_level(logging.WARNING):
        ds = load_dataset(path)
    assert ds.ids == ["a", "a#2", "a#3"]
    assert "duplicate ids" in caplog.text


def test_csv_without_cif_column(tmp_path: Path) -> None:
    path = tmp_path / "nocif.csv"
    path.write_text("material_id,energy\n1,0.5\n")
    with pytest.raises(ValueError, match=r"nocif\.csv.*missing column 'cif'"):
        load_dataset(path)


# --- JSON -----------------------------------------------------------------------------------

def _repr_string(structure: Structure) -> str:
    """Structure dict as a Python repr (single quotes), as some matcalc files store it."""
    return repr(json.loads(json.dumps(structure.as_dict())))


@pytest.fixture
def json_gz(tmp_path: Path, nacl, si, cu) -> Path:
    records = [
        {"mp_id": "mp-1", "formula": "NaCl", "structure": nacl.as_dict(),
         "bulk_modulus_vrh": 24.0, "shear_modulus_vrh": 15.0},
        {"mp_id": "mp-2", "formula": "Si", "structure": _repr_string(si),
         "bulk_modulus_vrh": "98.0", "shear_modulus_vrh": 66},
        {"mp_id": "mp-3", "formula": "Cu", "structure": cu.as_dict(),
         "bulk_modulus_vrh": -3, "shear_modulus_vrh": 48.0},
        {"mp_id": "mp-4", "formula": "Cu", "structure": json.dumps(cu.as_dict()),
         "bulk_modulus_vrh": 140.0},  # no shear modulus: kept with NaN
        {"mp_id": "mp-5", "formula": "NaCl", "bulk_modulus_vrh": 24.0},
        {"mp_id": "mp-6", "formula": "NaCl", "structure": nacl.as_dict(),
         "bulk_modulus_vrh": float("nan"), "shear_modulus_vrh": 15.0},
        ["not", "a", "record"],
    ]
    path = tmp_path / "elastic.json.gz"
    with gzip.open(path, "wt") as fh:
        json.dump(records, fh)
    return path


def test_json_records(json_gz: Path) -> None:
    ds = load_dataset(json_gz)
    assert ds.ids == ["mp-1", "mp-2", "mp-4"]
    assert ds.property_names == ["bulk_modulus_vrh", "shear_modulus_vrh"]
    assert ds[1].properties == {"bulk_modulus_vrh": 98.0, "shear_modulus_vrh": 66.0}
    assert len(ds[1].structure) == 8
    assert ds[2].properties["bulk_modulus_vrh"] == 140.0
    assert math.isnan(ds[2].properties["shear_modulus_vrh"])


def test_json_skips(json_gz: Path) -> None:
    ds = load_dataset(json_gz)
    assert (ds.summary.n_read, ds.summary.n_kept) == (7, 3)
    assert _reason(ds, "row 2 (id=mp-3)") == "non-positive modulus: bulk_modulus_vrh=-3"
    assert _reason(ds, "row 4 (id=mp-5)") == "missing field: structure"
    assert _reason(ds, "row 5 (id=mp-6)").startswith("non-positive modulus: bulk_modulus_vrh")
    assert _reason(ds, "row 6").startswith("malformed record")


@pytest.mark.parametrize("layout", ["records", "by_id"])
def test_json_dict_layouts(tmp_path: Path, nacl, cu, layout: str) -> None:
    entries = {"a": {"structure": nacl.as_dict(), "e": 1.0},
               "b": {"structure": cu.as_dict(), "e": 2.0}}
    data = ({"records": [dict(v, id=k) for k, v in entries.items()]} if layout == "records"
            else entries)
    path = tmp_path / "d.json"
    path.write_text(json.dumps(data))
    ds = load_dataset(path)
    assert ds.ids == ["a", "b"]
    assert [r.properties["e"] for r in ds] == [1.0, 2.0]


def test_json_unparsable_structure_string(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps([{"id": "x", "structure": "{not a dict"}]))
    ds = load_dataset(path)
    assert len(ds) == 0
    assert _reason(ds, "bad.json row 0 (id=x)").startswith("malformed structure")


# --- folders, single files, ASE formats ------------------------------------------------------

def test_folder_of_structures(tmp_path: Path, nacl, si, cu) -> None:
    folder = tmp_path / "structs"
    folder.mkdir()
    (folder / "NaCl.cif").write_text(_cif(nacl))
    (folder / "Si.cif").write_text(_cif(si))
    Poscar(cu).write_file(folder / "POSCAR_Cu")
    (folder / "broken.cif").write_text("garbage\n")
    (folder / "notes.txt").write_text("ignored")
    (folder / "properties.csv").write_text("id,bulk_modulus,label\nNaCl,24,a\nPOSCAR_Cu,140,b\n"
                                           "ghost,1,c\n")
    ds = load_dataset(folder)
    assert ds.ids == ["NaCl", "POSCAR_Cu", "Si"]
    assert ds.property_names == ["bulk_modulus"]
    assert [r.properties["bulk_modulus"] for r in ds[:2]] == [24.0, 140.0]
    assert math.isnan(ds[2].properties["bulk_modulus"])
    assert _reason(ds, "structs/broken.cif (id=broken)").startswith("malformed structure")


def test_single_structure_files(tmp_path: Path, nacl, cu) -> None:
    (tmp_path / "NaCl.cif").write_text(_cif(nacl))
    Poscar(cu).write_file(tmp_path / "POSCAR")
    cif = load_dataset(tmp_path / "NaCl.cif")
    assert cif.ids == ["NaCl"] and len(cif[0].structure) == 8
    poscar = load_dataset(tmp_path / "POSCAR")
    assert poscar.ids == ["POSCAR"] and poscar[0].structure.composition.reduced_formula == "Cu"


def test_extxyz(tmp_path: Path, nacl, cu) -> None:
    from ase import Atoms
    from ase.io import write
    from pymatgen.io.ase import AseAtomsAdaptor

    first = AseAtomsAdaptor.get_atoms(nacl)
    first.info = {"id": "nacl", "gap": 5.0, "note": "rocksalt"}
    second = AseAtomsAdaptor.get_atoms(cu)
    second.info = {"gap": 0.0}
    molecule = Atoms("H2", positions=[[0, 0, 0], [0, 0, 0.74]])  # no cell: skipped
    path = tmp_path / "frames.extxyz"
    write(path, [first, second, molecule], format="extxyz")
    ds = load_dataset(path)
    assert ds.ids == ["nacl", "1"]
    assert [r.properties["gap"] for r in ds] == [5.0, 0.0]
    assert "note" not in ds.property_names
    assert _reason(ds, "frames.extxyz frame 2").startswith("bad lattice")


def test_ase_db(tmp_path: Path, nacl, cu) -> None:
    import ase.db
    from pymatgen.io.ase import AseAtomsAdaptor

    path = tmp_path / "crystals.db"
    with ase.db.connect(path) as db:
        db.write(AseAtomsAdaptor.get_atoms(nacl), name="nacl", bulk_modulus=24.0)
        db.write(AseAtomsAdaptor.get_atoms(cu), bulk_modulus=140.0, source="test")
    ds = load_dataset(path)
    assert ds.ids == ["nacl", "2"]
    assert ds.property_names == ["bulk_modulus"]
    assert ds[1].properties == {"bulk_modulus": 140.0}
    assert ds[1].structure.composition.reduced_formula == "Cu"


# --- errors ---------------------------------------------------------------------------------

def test_missing_file_names_path_and_formats(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"nothere\.csv.*Supported formats"):
        load_dataset(tmp_path / "nothere.csv")


def test_unknown_suffix(tmp_path: Path) -> None:
    path = tmp_path / "data.parquet"
    path.write_text("x")
    with pytest.raises(ValueError, match=r"data\.parquet: unknown file format.*\.extxyz"):
        load_dataset(path)


def test_empty_files(tmp_path: Path) -> None:
    (tmp_path / "empty.json").write_text("")
    with pytest.raises(ValueError, match=r"empty\.json: file is empty"):
        load_dataset(tmp_path / "empty.json")
    (tmp_path / "header.csv").write_text("material_id,cif\n")
    with pytest.raises(ValueError, match=r"header\.csv.*no rows"):
        load_dataset(tmp_path / "header.csv")
    (tmp_path / "empty_folder").mkdir()
    with pytest.raises(ValueError, match="no structure files"):
        load_dataset(tmp_path / "empty_folder")


def test_skips_are_logged(cdvae_csv: Path, caplog) -> None:
    with caplog.at_level(logging.WARNING, logger="invdesign.data"):
        load_dataset(cdvae_csv)
    assert "skipped 3" in caplog.text and "val.csv row 3 (id=103)" in caplog.text


# --- structure checks -----------------------------------------------------------------------

@pytest.mark.parametrize(("structure", "category"), [
    (Structure(Lattice.cubic(4), [], []), "zero atoms"),
    (Structure(Lattice.cubic(4), [{"Na": 0.5, "K": 0.5}], [[0, 0, 0]]), "disordered site"),
    (Structure(Lattice.cubic(4), ["Na"], [[np.nan, 0, 0]]), "non-finite coordinates"),
    (Structure(Lattice(np.diag([np.inf, 4, 4])), ["Na"], [[0, 0, 0]]), "non-finite lattice"),
    # across the cell boundary: 0.01 and 0.99 are 0.08 Å apart through a periodic image
    (Structure(Lattice.cubic(4), ["Na", "Na"], [[0.01, 0, 0], [0.99, 0, 0]]), "atoms too close"),
    # one atom, but its own image is 0.4 Å away along a
    (Structure(Lattice.orthorhombic(0.4, 5, 5), ["Na"], [[0, 0, 0]]), "atoms too close"),
    (Structure(Lattice.cubic(4), ["Na", "Na"], [[0, 0, 0], [0, 0, 0]]), "atoms too close"),
])
def test_check_structure_rejects(structure: Structure, category: str) -> None:
    with pytest.raises(RowError) as info:
        check_structure(structure)
    assert info.value.reason.split(":")[0] == category


def test_check_structure_accepts_prototypes(nacl, si, cu) -> None:
    for structure in (nacl, si, cu):
        check_structure(structure, max_atoms=8)


def test_elements_beyond_the_property_tables_are_skipped_with_a_reason(tmp_path, nacl) -> None:
    from pymatgen.core import Lattice, Structure

    nacl.to(filename=str(tmp_path / "nacl.cif"))
    Structure(Lattice.cubic(4.0), ["Og", "Na"], [[0, 0, 0], [0.5, 0.5, 0.5]]).to(
        filename=str(tmp_path / "og.cif"))
    ds = load_dataset(tmp_path)
    assert ds.ids == ["nacl"]
    assert ds.summary.reasons == {"unsupported element": 1}
    assert "Og (Z = 118 > 100)" in str(ds.summary.skipped)


def test_structure_archive_reads_with_ids_and_skips_bad_entries(tmp_path: Path, nacl, cu) -> None:
    """invdesign's .npz archive (checkpoint references, sample's samples.npz) loads like any
    other file: stored ids, exact coordinates, a too-close pair skipped by name."""
    from invdesign.data.archive import write_structures

    crowded = Structure(Lattice.cubic(4.0), ["Cu", "Cu"], [[0, 0, 0], [0.01, 0, 0]])
    path = write_structures(tmp_path / "samples.npz", [nacl, crowded, cu],
                            ids=["sample-00000", "sample-00001", "sample-00002"])
    data = load_dataset(path)
    assert data.ids == ["sample-00000", "sample-00002"]
    np.testing.assert_array_equal(data.structures[1].frac_coords, cu.frac_coords)
    assert data.summary.skipped[0][0].startswith("samples.npz entry 1 (id=sample-00001)")
    (tmp_path / "broken.npz").write_bytes(b"not an archive")
    with pytest.raises(ValueError, match=r"broken\.npz: cannot read as an invdesign structure"):
        load_dataset(tmp_path / "broken.npz")
