"""Label tables joined by id, and a surrogate that learns a label target by transfer."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from test_surrogate import TINY
from toy_data import write_toy_dataset

from invdesign.data import join_labels, load_dataset, read_labels
from invdesign.oracle import LABEL_PROPERTIES
from invdesign.train.pipeline import SurrogateRunConfig, train_surrogate, transfer_states
from invdesign.train.surrogate import TrainConfig

ALPHA = "thermal_expansion_oracle"
HEADER = "id,formula,alpha_300K,status\n"


def _label_file(tmp_path, rows: str):
    path = tmp_path / "labels.csv"
    path.write_text(HEADER + rows)
    return path


def test_read_labels_keeps_ok_rows_and_says_why_others_give_none(tmp_path):
    path = _label_file(tmp_path, "a,X,1.5e-5,ok\n"
                                 "b,X,2e-5,failed: mechanically unstable\n"
                                 "c,X,nan,ok\n"
                                 "d,X,-1e-6,ok\n"
                                 "e,X,3e-5,ok\n")
    table = read_labels(path, LABEL_PROPERTIES, positive=(ALPHA,))
    assert table.values == {"a": {ALPHA: 1.5e-5}, "e": {ALPHA: 3e-5}}
    reasons = dict(table.skipped)
    assert reasons["labels.csv line 3 (b)"].startswith("status: failed")
    assert reasons["labels.csv line 4 (c)"].startswith("no value")
    assert reasons["labels.csv line 5 (d)"].startswith("non-positive")
    assert table.counts() == {ALPHA: 2} and len(table.sha256) == 64


def test_read_labels_names_the_file_and_missing_column(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("id,K_vrh\na,3\n")
    with pytest.raises(ValueError, match=r"bad\.csv.*alpha_300K"):
        read_labels(path, LABEL_PROPERTIES)
    with pytest.raises(FileNotFoundError, match=r"nowhere\.csv"):
        read_labels(tmp_path / "nowhere.csv", LABEL_PROPERTIES)


def test_join_labels_adds_by_id_and_leaves_the_rest_missing(tmp_path, nacl, cu):
    data = write_toy_dataset(tmp_path / "toy.json", [nacl, cu])
    dataset = load_dataset(data)
    labels = read_labels(_label_file(tmp_path, "toy-0-1,NaCl,4e-5,ok\nunknown,X,1e-5,ok\n"),
                         LABEL_PROPERTIES)
    joined = join_labels(dataset, labels)
    y = joined.targets([ALPHA, "bulk_modulus_vrh"])
    assert joined.ids == dataset.ids
    assert y[joined.ids.index("toy-0-1"), 0] == pytest.approx(4e-5)
    assert np.isnan(np.delete(y[:, 0], joined.ids.index("toy-0-1"))).all()
    assert np.isfinite(y[:, 1]).all()  # the file's own properties are kept


def test_transfer_learns_a_label_target_and_keeps_shared_output_rows(tmp_path, nacl, cu, si):
    data = write_toy_dataset(tmp_path / "toy.json", [nacl, cu, si])
    source = train_surrogate(data, TINY).surrogate
    ids = load_dataset(data).ids
    rows = "".join(f"{i},X,{1e-5 * (1 + k)},ok\n" for k, i in enumerate(ids[::2]))
    labels = read_labels(_label_file(tmp_path, rows), LABEL_PROPERTIES, positive=(ALPHA,))
    targets = (*TINY.targets, ALPHA)

    states = transfer_states(source, targets)
    assert len(states) == source.n_members
    for state, old in zip(states, source.state_dicts, strict=True):
        assert state["head.5.weight"].shape[0] == 3
        assert torch.equal(state["head.5.weight"][:2], old["head.5.weight"])
        assert torch.equal(state["head.5.weight"][2], torch.zeros_like(old["head.5.weight"][0]))
        assert state["target_std"][2] == 1.0

    config = SurrogateRunConfig(**{**TINY.__dict__, "targets": targets,
                                   "train": TrainConfig(epochs=2, batch_size=4)})
    run = train_surrogate(data, config, init_from=source, labels=labels)
    assert run.surrogate.meta["data"]["labels"]["labelled"] == {ALPHA: len(ids[::2])}
    assert run.split.to_dict() == source.meta["split"]  # the data file alone sets the split
    assert run.surrogate.meta["init_from"]["targets"] == list(TINY.targets)
    table = run.surrogate.predict([nacl, cu])
    assert (table[ALPHA] > 0).all() and np.isfinite(table[f"{ALPHA}_std"]).all()


def test_a_label_target_without_any_matching_id_is_an_error(tmp_path, nacl, cu, si):
    data = write_toy_dataset(tmp_path / "toy.json", [nacl, cu, si])
    labels = read_labels(_label_file(tmp_path, "other,X,1e-5,ok\n"), LABEL_PROPERTIES)
    config = SurrogateRunConfig(**{**TINY.__dict__, "targets": (*TINY.targets, ALPHA)})
    with pytest.raises(ValueError, match="none of its ids"):
        train_surrogate(data, config, labels=labels)
    assert math.isclose(labels.values["other"][ALPHA], 1e-5)
