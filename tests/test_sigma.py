import numpy as np
import pytest
import torch

from privsplat.errors import PrivsplatError
from privsplat.privacy.sigma import SigmaParams, gradient_magnitude, protected_size

FULL = SigmaParams(resolution=0)


def ramp(h=16, w=20, ax=0.0, ay=0.0, channels=(1.0, 0.0, 0.0)):
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    base = ax * x + ay * y
    return np.stack([c * base for c in channels], axis=-1).astype(np.float32)


@pytest.mark.parametrize("kernel", ["sobel", "scharr", "central"])
def test_unit_slope_per_pixel_for_every_kernel(kernel):
    p = SigmaParams(kernel=kernel, resolution=0)
    g = gradient_magnitude(ramp(ax=0.01), p)
    np.testing.assert_allclose(g[1:-1, 1:-1], 0.01, atol=1e-6)
    # replicate padding: one-sided difference at the border, half the slope
    np.testing.assert_allclose(g[1:-1, 0], 0.005, atol=1e-6)


def test_magnitude_is_sum_of_per_direction_colour_norms():
    # eq. 6: ||dc/dx||_2 + ||dc/dy||_2 with c = (3a x, 4a x, 0) + (0, 0, b y)
    a, b = 0.01, 0.02
    y, x = np.mgrid[0:16, 0:16].astype(np.float32)
    img = np.stack([3 * a * x, 4 * a * x, b * y], axis=-1)
    g = gradient_magnitude(img, FULL)
    np.testing.assert_allclose(g[2:-2, 2:-2], 5 * a + b, rtol=1e-5)


def test_flat_image_is_exactly_zero_and_has_finite_gradients():
    img = torch.full((1, 8, 8, 3), 0.5, requires_grad=True)
    g = gradient_magnitude(img, SigmaParams(resolution=0))
    assert g.shape == (1, 8, 8) and float(g.abs().max()) == 0.0
    g.sum().backward()
    assert torch.isfinite(img.grad).all()


def test_area_downsample_doubles_slope_and_sets_size():
    g = gradient_magnitude(ramp(h=64, w=128, ax=0.01), SigmaParams(resolution=64))
    assert g.shape == (32, 64)
    np.testing.assert_allclose(g[2:-2, 2:-2], 0.02, atol=1e-6)


def test_blur_keeps_a_linear_ramp():
    g = gradient_magnitude(ramp(h=40, w=40, ax=0.01), SigmaParams(blur_sigma=1.5, resolution=0))
    np.testing.assert_allclose(g[8:-8, 8:-8], 0.01, atol=1e-6)


def test_protected_size():
    assert protected_size(640, 480, 64) == (64, 48)
    assert protected_size(480, 640, 64) == (48, 64)
    assert protected_size(32, 32, 64) == (32, 32)  # never upsampled
    assert protected_size(100, 50, 0) == (100, 50)


def test_numpy_and_torch_paths_agree_and_batch():
    rng = np.random.default_rng(0)
    imgs = rng.random((2, 3, 24, 30, 3), dtype=np.float32)
    p = SigmaParams(kernel="scharr", blur_sigma=0.7, resolution=16)
    batched = gradient_magnitude(torch.from_numpy(imgs), p)
    assert batched.shape == (2, 3, 13, 16)
    single = gradient_magnitude(imgs[1, 2], p)
    assert isinstance(single, np.ndarray) and single.dtype == np.float32
    np.testing.assert_allclose(batched[1, 2].numpy(), single, atol=1e-6)
    u8 = (imgs[0, 0] * 255).astype(np.uint8)
    np.testing.assert_allclose(gradient_magnitude(u8, p), gradient_magnitude(u8 / np.float32(255), p), atol=1e-6)


def test_torch_path_is_differentiable():
    img = torch.rand(1, 10, 12, 3, dtype=torch.float64, requires_grad=True)
    p = SigmaParams(resolution=6, blur_sigma=0.5)
    assert torch.autograd.gradcheck(lambda x: gradient_magnitude(x, p), (img,), eps=1e-6, atol=1e-5)


def test_params_round_trip_and_validation():
    p = SigmaParams(kernel="central", blur_sigma=1.0, resolution=32)
    assert SigmaParams.from_dict(p.to_dict()) == p
    assert SigmaParams.from_dict({"kernel": "sobel", "blur_sigma": 0, "resolution": 64}) == SigmaParams()
    for bad in (
        {"kernel": "laplace"},
        {"resolution": -1},
        {"blur_sigma": float("nan")},
        {"colour": 1},
        {"operator": "blur"},
        "sobel",
    ):
        with pytest.raises(PrivsplatError):
            SigmaParams.from_dict(bad)
