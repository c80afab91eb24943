import numpy as np
import pytest

from privsplat.errors import PrivsplatError
from privsplat.eval.inversion import (
    fit_image_to_magnitude,
    invert_gradient_magnitude,
    poisson_from_magnitude,
    sigma_mismatch,
)
from privsplat.privacy.sigma import SigmaParams, gradient_magnitude


def grey_sigma(x: np.ndarray) -> np.ndarray:
    return gradient_magnitude(np.repeat(x[..., None], 3, -1).astype(np.float32), SigmaParams(resolution=0))


def blob(n=48, width=0.25):
    yy, xx = np.mgrid[0:n, 0:n] / (n - 1) - 0.5
    return np.exp(-(xx**2 + yy**2) / (2 * width**2)).astype(np.float32)


def test_poisson_rebuilds_a_centred_blob_from_its_magnitude():
    # A bright centred blob fits the sign guess (brighter toward the centre): the integration
    # must rebuild it up to an offset and scale.
    truth = blob()
    x = poisson_from_magnitude(grey_sigma(truth))
    assert np.corrcoef(x.ravel(), truth.ravel())[0, 1] > 0.95


def test_optim_reduces_the_sigma_mismatch_on_a_real_image():
    from skimage import data

    mag = gradient_magnitude(data.astronaut(), SigmaParams(resolution=48))
    mag = mag / mag.max()
    x, history = fit_image_to_magnitude(mag, poisson_from_magnitude(mag), steps=120)
    assert history[-1] < 0.5 * history[0]
    random = np.random.default_rng(0).random(mag.shape)
    assert sigma_mismatch(x, mag) < 0.5 * sigma_mismatch(random, mag)


@pytest.mark.parametrize("method", ["poisson", "optim"])
def test_inversion_returns_a_unit_range_image_of_the_requested_size(method):
    mag = grey_sigma(blob(32))
    out = invert_gradient_magnitude(mag, (80, 96), method, steps=20)
    assert out.shape == (80, 96) and out.dtype == np.float32
    assert out.min() >= 0.0 and out.max() <= 1.0 and out.max() - out.min() > 0.5


def test_inversion_rejects_bad_input():
    with pytest.raises(PrivsplatError, match="2-D"):
        invert_gradient_magnitude(np.ones((2, 2)))
    with pytest.raises(PrivsplatError, match="non-negative"):
        invert_gradient_magnitude(-np.ones((8, 8)))
    with pytest.raises(PrivsplatError, match="unknown inversion method"):
        invert_gradient_magnitude(np.ones((8, 8)), method="magic")
