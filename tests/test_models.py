"""Surrogate network: invariances, masked loss, one-batch training, transfer, checkpoints."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import torch
from pymatgen.core import Lattice, Structure

from invdesign.featurize.batch import collate
from invdesign.featurize.graph import GraphConfig, build_graph, n_global_features
from invdesign.models.checkpoint import load_checkpoint, save_checkpoint, update_card_meta
from invdesign.models.ensemble import Ensemble
from invdesign.train.ensemble import ArchitectureConfig, build_model, train_ensemble
from invdesign.train.surrogate import TrainConfig, masked_loss, train_model

GRAPH = GraphConfig(cutoff=5.0, max_neighbors=12)


def _model(n_targets: int = 2, seed: int = 0):
    torch.manual_seed(seed)
    config = ArchitectureConfig(hidden=16, n_conv=2, n_gaussians=16, head_hidden=16)
    model = build_model(config.model_config(n_targets, GRAPH.cutoff, n_global_features(GRAPH)))
    return model.eval()


def _predict(model, structures):
    with torch.no_grad():
        return model.predict(collate([build_graph(s, GRAPH) for s in structures])).numpy()


def test_prediction_invariant_to_permutation_rotation_supercell(nacl):
    model = _model()
    ref = _predict(model, [nacl])
    perm = Structure.from_sites([nacl[i] for i in np.random.default_rng(1).permutation(8)])
    rot = np.linalg.qr(np.random.default_rng(2).normal(size=(3, 3)))[0]
    rotated = Structure(Lattice(nacl.lattice.matrix @ rot.T), nacl.species, nacl.frac_coords)
    for other in (perm, rotated, nacl * (1, 2, 1)):
        assert np.allclose(_predict(model, [other]), ref, atol=1e-5)


def test_batch_does_not_mix_graphs(nacl, cu, si):
    model = _model()
    together = _predict(model, [nacl, cu, si])
    alone = np.vstack([_predict(model, [s]) for s in (nacl, cu, si)])
    assert np.allclose(together, alone, atol=1e-5)


def test_masked_loss_ignores_missing_labels():
    pred = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    target = torch.tensor([[1.0, float("nan")], [float("nan"), 5.0]])
    assert masked_loss(pred, target, "l1").item() == pytest.approx(0.5)
    assert masked_loss(pred, target, "mse").item() == pytest.approx(0.5)
    all_missing = torch.full_like(pred, float("nan"))
    assert masked_loss(pred, all_missing, "l1").item() == 0.0


def _toy_set(structures):
    graphs = [build_graph(s, GRAPH) for s in structures]
    y = np.array([[np.log10(g.density * 30), g.volume_per_atom / 10] for g in graphs],
                 dtype=np.float32)
    y[0, 1] = np.nan  # a missing label must not break training
    return graphs, y


def _toy_structures(nacl, cu, si):
    out = []
    for scale in (0.95, 1.0, 1.05, 1.1):
        for s in (nacl, cu, si):
            t = s.copy()
            t.scale_lattice(s.volume * scale)
            out.append(t)
    return out


def test_training_reduces_loss_and_restores_best(nacl, cu, si):
    graphs, y = _toy_set(_toy_structures(nacl, cu, si))
    model = _model()
    history = train_model(model, (graphs, y), (graphs, y),
                          TrainConfig(epochs=30, batch_size=6, lr=5e-3, patience=30))
    assert history.train_loss[-1] < 0.5 * history.train_loss[0]
    assert history.val_mae[history.best_epoch] == min(history.val_mae)
    assert np.isfinite(history.val_mae).all()


def test_scalers_live_in_state_dict_and_checkpoint_round_trip(tmp_path, nacl, cu, si):
    graphs, y = _toy_set(_toy_structures(nacl, cu, si))
    members = train_ensemble(_model().config, (graphs, y), (graphs, y),
                             TrainConfig(epochs=2, batch_size=6), n_members=2)
    assert not torch.allclose(members[0].state_dict["target_mean"], torch.zeros(2))
    ens = Ensemble(_model().config, [m.state_dict for m in members])
    before = ens.predict(graphs)
    assert before.shape == (2, len(graphs), 2)
    assert not np.allclose(before[0], before[1])  # members differ by seed
    config = _model().config
    torch.manual_seed(12345)  # whatever the global state, the seeds decide the weights
    again = train_ensemble(config, (graphs, y), (graphs, y),
                           TrainConfig(epochs=2, batch_size=6), n_members=2)
    for first, second in zip(members, again, strict=True):
        assert all(torch.equal(first.state_dict[k], v) for k, v in second.state_dict.items())
    save_checkpoint(tmp_path, kind="surrogate", config={"model": _model().config.to_dict()},
                    state_dicts=[m.state_dict for m in members], meta={"note": "test"})
    payload = load_checkpoint(tmp_path, kind="surrogate")  # weights_only=True inside
    after = Ensemble(_model().config, payload["state_dicts"]).predict(graphs)
    assert np.allclose(before, after)
    assert (tmp_path / "card.json").read_text().count('"note": "test"') == 1
    with pytest.raises(ValueError, match="kind"):
        load_checkpoint(tmp_path, kind="vae")
    with pytest.raises(FileNotFoundError, match=r"weights\.pt"):
        load_checkpoint(tmp_path / "nothing")


def test_transfer_copies_convolutions_and_freezing_keeps_them(nacl, cu, si):
    graphs, y = _toy_set(_toy_structures(nacl, cu, si))
    source = _model(n_targets=2, seed=3)
    three = ArchitectureConfig(hidden=16, n_conv=2, n_gaussians=16, head_hidden=16)
    target = build_model(three.model_config(3, GRAPH.cutoff, n_global_features(GRAPH)),
                         source.state_dict())
    assert torch.equal(target.convs[0].node_linear.weight, source.convs[0].node_linear.weight)
    assert target.head[-1].out_features == 3
    frozen = build_model(source.config, source.state_dict())
    conv_before = frozen.convs[1].node_linear.weight.clone()
    head_before = frozen.head[0].weight.clone()
    train_model(frozen, (graphs, y), (graphs, y),
                TrainConfig(epochs=3, batch_size=6, freeze_convolutions=True),
                fit_normalisation=False)
    assert torch.equal(frozen.convs[1].node_linear.weight, conv_before)
    assert not torch.equal(frozen.head[0].weight, head_before)


def test_bond_angle_model_invariant_and_checks_columns(nacl):
    graph = GraphConfig(cutoff=5.0, max_neighbors=12, angular=6)
    config = ArchitectureConfig(hidden=16, n_conv=2, n_gaussians=16, head_hidden=16)
    torch.manual_seed(0)
    model = build_model(config.model_config(2, graph.cutoff, n_global_features(graph),
                                            n_angular=graph.angular)).eval()

    def predict(s, g=graph):
        with torch.no_grad():
            return model.predict(collate([build_graph(s, g)])).numpy()

    rot = np.linalg.qr(np.random.default_rng(3).normal(size=(3, 3)))[0]
    rotated = Structure(Lattice(nacl.lattice.matrix @ rot.T), nacl.species, nacl.frac_coords)
    assert np.allclose(predict(rotated), predict(nacl), atol=1e-5)
    assert np.allclose(predict(nacl * (2, 1, 1)), predict(nacl), atol=1e-5)
    with pytest.raises(ValueError, match="bond-angle columns"):
        predict(nacl, GraphConfig(cutoff=5.0, max_neighbors=12))


def test_numpy_numbers_in_checkpoint_metadata_still_load_weights_only(tmp_path):
    meta = {"metric": np.float64(0.5), "counts": np.arange(3), "nested": [{"n": np.int64(2)}]}
    save_checkpoint(tmp_path / "ck", kind="test", config={}, state_dicts=[], meta=meta)
    loaded = load_checkpoint(tmp_path / "ck", kind="test")["meta"]
    assert loaded["metric"] == 0.5 and type(loaded["metric"]) is float
    assert loaded["counts"] == [0, 1, 2] and loaded["nested"][0]["n"] == 2


def test_card_metadata_is_the_record_and_a_broken_card_falls_back(tmp_path, caplog):
    folder = save_checkpoint(tmp_path / "ck", kind="test", config={}, state_dicts=[],
                             meta={"schedule": {"passes": 1}})
    card = json.loads((folder / "card.json").read_text())
    card["meta"]["schedule"]["passes"] = 6  # a benchmark updated the card, not the weights
    (folder / "card.json").write_text(json.dumps(card))
    assert load_checkpoint(folder, kind="test")["meta"]["schedule"] == {"passes": 6}
    (folder / "card.json").write_text("{not json")
    with caplog.at_level(logging.WARNING, logger="invdesign.models.checkpoint"):
        assert load_checkpoint(folder, kind="test")["meta"]["schedule"] == {"passes": 1}
    assert "card.json is unreadable" in caplog.text


def test_card_metadata_updates_leave_the_weights_alone(tmp_path):
    folder = save_checkpoint(tmp_path / "ck", kind="test", config={}, state_dicts=[],
                             meta={"metrics": {"mae": 1.0}})
    weights = (folder / "weights.pt").read_bytes()
    meta = load_checkpoint(folder, kind="test")["meta"]
    update_card_meta(folder, meta | {"metrics": {"mae": np.float64(0.5)}})
    assert load_checkpoint(folder, kind="test")["meta"]["metrics"] == {"mae": 0.5}
    assert (folder / "weights.pt").read_bytes() == weights
    assert json.loads((folder / "card.json").read_text())["kind"] == "test"
