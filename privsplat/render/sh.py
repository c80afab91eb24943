"""Real spherical harmonics up to degree 3, in the sign convention 3DGS/gsplat use.

The basis is the standard real SH with the Condon-Shortley phase; the constants are
the usual normalisation factors sqrt((2l+1)/4pi * (l-|m|)!/(l+|m|)!) (times sqrt 2 for m != 0).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..errors import PrivsplatError

MAX_SH_DEGREE = 3

C0 = 0.28209479177387814
C1 = 0.4886025119029199
C2 = (1.0925484305920792, -1.0925484305920792, 0.31539156525252005, -1.0925484305920792, 0.5462742152960396)
C3 = (
    -0.5900435899266435,
    2.890611442640554,
    -0.4570457994644658,
    0.3731763325901154,
    -0.4570457994644658,
    1.445305721320277,
    -0.5900435899266435,
)


def sh_basis(degree: int, dirs: torch.Tensor) -> torch.Tensor:
    """The (degree+1)^2 basis functions at unit directions dirs [...,3] -> [..., (degree+1)^2]."""
    if not 0 <= degree <= MAX_SH_DEGREE:
        raise PrivsplatError(f"sh_degree must be between 0 and {MAX_SH_DEGREE}, got {degree}")
    x, y, z = dirs.unbind(-1)
    out = [torch.full_like(x, C0)]
    if degree >= 1:
        out += [-C1 * y, C1 * z, -C1 * x]
    if degree >= 2:
        xx, yy, zz = x * x, y * y, z * z
        out += [C2[0] * x * y, C2[1] * y * z, C2[2] * (2 * zz - xx - yy), C2[3] * x * z, C2[4] * (xx - yy)]
    if degree >= 3:
        out += [
            C3[0] * y * (3 * xx - yy),
            C3[1] * x * y * z,
            C3[2] * y * (4 * zz - xx - yy),
            C3[3] * z * (2 * zz - 3 * xx - 3 * yy),
            C3[4] * x * (4 * zz - xx - yy),
            C3[5] * z * (xx - yy),
            C3[6] * x * (xx - 3 * yy),
        ]
    return torch.stack(out, dim=-1)


def eval_sh(degree: int, coeffs: torch.Tensor, dirs: torch.Tensor) -> torch.Tensor:
    """Colour from SH coefficients coeffs [..., K, 3] seen along dirs [..., 3] -> [..., 3].

    Uses the first (degree+1)^2 coefficients (K may be larger, as when bands are activated
    one by one during training). dirs need not be normalised. No +0.5 offset here; the
    rasterizer adds it (as gsplat does).
    """
    n_basis = (degree + 1) ** 2
    if coeffs.shape[-2] < n_basis:
        raise PrivsplatError(
            f"sh_degree {degree} needs {n_basis} SH coefficients per surfel, "
            f"got {coeffs.shape[-2]}; lower sh_degree or pass more coefficients"
        )
    basis = sh_basis(degree, F.normalize(dirs, dim=-1))
    return (basis[..., None] * coeffs[..., :n_basis, :]).sum(dim=-2)
