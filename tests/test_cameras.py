"""The camera type and look_at: OpenCV axes (x right, y down, z forward)."""

import numpy as np
import torch

from privsplat.cameras import Cameras, intrinsics_from_fov, look_at


def test_look_at_is_upright_opencv():
    w2c = look_at(np.array([0.0, 0.0, 5.0]), np.zeros(3))
    R = w2c[:3, :3]
    np.testing.assert_allclose(R[2], [0, 0, -1], atol=1e-12)  # forward: toward the target
    np.testing.assert_allclose(R[1], [0, -1, 0], atol=1e-12)  # image down = world down
    np.testing.assert_allclose(R[0], [1, 0, 0], atol=1e-12)  # image right = world +x
    np.testing.assert_allclose(np.linalg.det(R), 1.0)
    np.testing.assert_allclose(w2c @ [0, 0, 5.0, 1], [0, 0, 0, 1], atol=1e-12)


def test_point_above_target_projects_above_image_centre():
    K = intrinsics_from_fov(64, 64, np.radians(40))
    w2c = look_at(np.array([3.0, 1.0, 4.0]), np.zeros(3))
    p = w2c @ [0, 0.5, 0, 1]
    v = (K @ p[:3])[1] / p[2]
    assert v < 32  # world up is image up


def test_scaled_cameras_keep_rays():
    K = intrinsics_from_fov(64, 48, np.radians(50))
    cams = Cameras.from_numpy(K, look_at(np.array([0, 0, 3.0]), np.zeros(3)), 64, 48)
    half = cams.scaled(0.5)
    assert (half.width, half.height) == (32, 24)
    # the continuous pixel coordinate of a point scales with the image
    X = torch.tensor([0.1, -0.2, 0.0, 1.0])

    def project(c):
        x = (c.viewmats[0] @ X)[:3]
        return (c.Ks[0] @ x)[:2] / x[2]

    torch.testing.assert_close(project(half), 0.5 * project(cams))


def test_orbit_cameras_stay_in_the_band_of_heights_asked_for():
    """TSDF fusion's orbit stays within the training cameras' elevations (mesh.tsdf.orbit_heights):
    views from where no camera looked fused unsupervised surfels (a fin in front of a face)."""
    from privsplat.cameras import camera_centers, orbit_cameras

    center, up = np.array([0.1, -0.2, 0.3]), np.array([0.0, 1.0, 0.0])
    for heights in [(-0.85, 0.85), (-0.26, 0.57)]:
        w2cs = np.stack(orbit_cameras(center, 4.0, up, 144, heights))
        d = camera_centers(w2cs) - center
        sines = d @ up / np.linalg.norm(d, axis=1)
        assert np.allclose(np.linalg.norm(d, axis=1), 4.0)
        assert (
            heights[0] - 1e-9 <= sines.min() < heights[0] + 0.02
            and heights[1] - 0.02 < sines.max() <= heights[1] + 1e-9
        )
        # every view looks at the centre
        fwd = w2cs[:, 2, :3]  # the camera's +z axis in world coordinates (OpenCV)
        assert np.allclose(np.einsum("ij,ij->i", fwd, -d / 4.0), 1.0, atol=1e-6)
