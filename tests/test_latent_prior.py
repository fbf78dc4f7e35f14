"""The latent mixture prior: exact Gaussian conditioning, component choice, fit, round trip."""

from __future__ import annotations

import numpy as np
import pytest

from invdesign.models.latent_prior import LatentMixture


def one_gaussian() -> LatentMixture:
    cov = np.array([[2.0, 0.3, 0.8], [0.3, 1.0, -0.5], [0.8, -0.5, 1.5]])  # [z1, z2, y]
    return LatentMixture(weights=np.ones(1), means=np.array([[1.0, -1.0, 0.5]]),
                         covariances=cov[None], latent=2)


def test_conditional_samples_follow_gaussian_conditioning():
    prior = one_gaussian()
    cov = prior.covariances[0]
    y = 1.7
    z = prior.sample(np.full((40000, 1), y), np.random.default_rng(0))
    gain = cov[:2, 2:] / cov[2, 2]
    mean = prior.means[0, :2] + gain[:, 0] * (y - 0.5)
    cond_cov = cov[:2, :2] - gain @ cov[2:, :2]
    np.testing.assert_allclose(z.mean(0), mean, atol=0.03)
    np.testing.assert_allclose(np.cov(z.T), cond_cov, atol=0.05)


def test_condition_selects_the_component_that_explains_it():
    eye = np.eye(2) * 0.01
    prior = LatentMixture(weights=np.array([0.9, 0.1]),
                          means=np.array([[-5.0, -3.0], [5.0, 3.0]]),
                          covariances=np.stack([eye, eye]), latent=1)
    rng = np.random.default_rng(1)
    assert (prior.sample(np.full((200, 1), 3.0), rng) > 4).all()
    assert (prior.sample(np.full((200, 1), -3.0), rng) < -4).all()


def test_unconditional_mixture_samples_by_weight():
    eye = np.eye(2) * 0.01
    prior = LatentMixture(weights=np.array([0.8, 0.2]), means=np.array([[-5.0, 0.0],
                                                                        [5.0, 0.0]]),
                          covariances=np.stack([eye, eye]), latent=2)
    z = prior.sample(np.zeros((4000, 0)), np.random.default_rng(2))
    assert z.shape == (4000, 2) and abs((z[:, 0] < 0).mean() - 0.8) < 0.03
    hot = prior.sample(np.zeros((4000, 0)), np.random.default_rng(2), temperature=3.0)
    assert hot[:, 1].std() == pytest.approx(3 * z[:, 1].std(), rel=0.1)


def test_fit_prefers_several_components_for_clustered_codes_and_round_trips(tmp_path):
    rng = np.random.default_rng(3)
    centres = rng.normal(scale=6.0, size=(4, 3))

    def draw(n: int) -> np.ndarray:
        return centres[rng.integers(4, size=n)] + 0.3 * rng.standard_normal((n, 3))

    train, val = draw(400), draw(100)
    prior, scores = LatentMixture.fit(train[:, :2], train[:, 2:], z_val=val[:, :2],
                                      y_val=val[:, 2:], components=(1, 4))
    assert prior.n_components == 4 and scores[4] > scores[1]
    assert prior.latent == 2 and prior.n_conditions == 1
    loaded = LatentMixture.load(prior.save(tmp_path / "prior.npz"))
    y = np.zeros((5, 1))
    np.testing.assert_array_equal(prior.sample(y, np.random.default_rng(4)),
                                  loaded.sample(y, np.random.default_rng(4)))


def test_fit_rejects_non_finite_codes():
    z = np.zeros((10, 2))
    z[3, 1] = np.nan
    with pytest.raises(ValueError, match="finite"):
        LatentMixture.fit(z, np.zeros((10, 0)), z_val=np.zeros((4, 2)), y_val=np.zeros((4, 0)))


def test_draws_per_row_share_the_rows_component_and_default_to_one():
    eye = np.eye(2) * 0.01
    prior = LatentMixture(weights=np.array([0.5, 0.5]), means=np.array([[-5.0], [5.0]]) @
                          np.ones((1, 2)), covariances=np.stack([eye, eye]), latent=2)
    y = np.zeros((300, 0))
    z = prior.sample(y, np.random.default_rng(4), per_row=3)
    assert z.shape == (900, 2)
    side = (z[:, 0] > 0).reshape(300, 3)
    assert (side.all(1) | ~side.any(1)).all()  # each row's three draws: one component
    assert 0.4 < side[:, 0].mean() < 0.6  # and the rows still follow the weights
    assert (np.diff(z.reshape(300, 3, 2), axis=1) != 0).all()  # separate draws, not copies
    np.testing.assert_array_equal(prior.sample(y, np.random.default_rng(4), per_row=1),
                                  prior.sample(y, np.random.default_rng(4)))
