"""The latent scatter plot: the points are the posterior means given, coloured by label when there are labels, and
an unlabelled plot draws without a warning (a colormap without values made matplotlib warn on stderr)."""

import warnings

import numpy as np

from aevb import plots


def test_latent_scatter_draws_the_means_with_and_without_labels():
    mu = np.random.default_rng(0).normal(size=(40, 2))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        bare = plots.latent_scatter(mu)
    (points,) = bare.axes[0].collections
    np.testing.assert_allclose(points.get_offsets(), mu)
    assert len(bare.axes) == 1  # no colorbar
    labelled = plots.latent_scatter(mu, np.arange(40) % 3)
    np.testing.assert_allclose(labelled.axes[0].collections[0].get_offsets(), mu)
    np.testing.assert_array_equal(labelled.axes[0].collections[0].get_array(), np.arange(40) % 3)
    assert len(labelled.axes) == 2  # the colorbar's
    plots.pyplot().close("all")
