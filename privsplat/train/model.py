"""The surfel model: 2D Gaussian surfel parameters, their colour model, initialisation and I/O.

Parameters live in one nn.ParameterDict (the layout gsplat's strategies expect):
means [N,3]; quats [N,4] (wxyz); scales [N,3] log (the third is a fixed tiny value: surfels are
flat, and DefaultStrategy's split samples in 3D); opacities [N] logit; and colour:
- "shaded": albedo [N,3] logit; the shading is albedo x E(n), E a learned world-space
  irradiance (real SH up to degree 2, 9x3 coefficients, outside the dict: it is global) of the
  surfel normal turned toward the camera. The normal drives the shading, so a gradient-only loss
  can see a surfel tilt (METHOD.md). Optional view-dependent SH residual (shN).
- "sh": sh0 [N,1,3], shN [N,K-1,3], view-dependent SH as in 3DGS.
"""

from __future__ import annotations

import math
import struct
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..cameras import Cameras
from ..errors import PrivsplatError
from ..render import RenderOutput, rasterize
from ..render.common import quat_axes
from ..render.sh import C0 as SH_C0
from .config import FitConfig

FLAT_LOG_SCALE = math.log(1e-6)  # the third scale of a surfel: flat


def quats_from_normals(normals: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """wxyz quaternions whose rotation maps +z to each normal, with a random spin about it."""
    n = normals / np.linalg.norm(normals, axis=1, keepdims=True)
    z = np.array([0.0, 0.0, 1.0])
    axis = np.cross(z, n)
    s = np.linalg.norm(axis, axis=1)
    c = n @ z
    angle = np.arctan2(s, c)
    axis = np.where(s[:, None] > 1e-8, axis / np.maximum(s, 1e-12)[:, None], np.array([1.0, 0.0, 0.0]))
    q_align = np.concatenate([np.cos(angle / 2)[:, None], axis * np.sin(angle / 2)[:, None]], axis=1)
    spin = rng.uniform(0, np.pi, len(n))
    q_spin = np.stack([np.cos(spin), np.zeros_like(spin), np.zeros_like(spin), np.sin(spin)], axis=1)
    return quat_multiply(q_align, q_spin)


def quat_multiply(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    aw, ax, ay, az = a.T
    bw, bx, by, bz = b.T
    return np.stack(
        [
            aw * bw - ax * bx - ay * by - az * bz,
            aw * bx + ax * bw + ay * bz - az * by,
            aw * by - ax * bz + ay * bw + az * bx,
            aw * bz + ax * by - ay * bx + az * bw,
        ],
        axis=1,
    )


def irradiance_basis(n: torch.Tensor) -> torch.Tensor:
    """Real SH basis up to degree 2 at unit vectors n [...,3] -> [...,9]."""
    x, y, z = n.unbind(-1)
    return torch.stack(
        [
            torch.full_like(x, SH_C0),
            0.4886025119029199 * y,
            0.4886025119029199 * z,
            0.4886025119029199 * x,
            1.0925484305920792 * x * y,
            1.0925484305920792 * y * z,
            0.31539156525252005 * (3 * z * z - 1),
            1.0925484305920792 * x * z,
            0.5462742152960396 * (x * x - y * y),
        ],
        dim=-1,
    )


def mean_spacing(points: np.ndarray, k: int = 3) -> np.ndarray:
    """Mean distance to the k nearest neighbours of each point."""
    from scipy.spatial import cKDTree

    d, _ = cKDTree(points).query(points, k=k + 1)
    return d[:, 1:].mean(axis=1)


class SurfelModel(torch.nn.Module):
    def __init__(
        self,
        params: dict[str, torch.Tensor],
        colour_model: str,
        sh_degree: int,
        view_residual: bool,
        light: torch.Tensor | None = None,
        lowpass: str = "area",
    ):
        super().__init__()
        self.lowpass = lowpass
        self.params = torch.nn.ParameterDict({k: torch.nn.Parameter(v) for k, v in params.items()})
        self.colour_model = colour_model
        self.sh_degree = sh_degree
        self.view_residual = view_residual
        if light is None:
            light = torch.zeros(9, 3)
            light[0] = 1.0 / SH_C0  # E(n) = 1 everywhere: start from ambient light
        self.light = torch.nn.Parameter(light.to(self.params["means"]))

    # --- construction ---
    @classmethod
    def from_points(
        cls,
        points: np.ndarray,
        normals: np.ndarray,
        cfg: FitConfig,
        colours: np.ndarray | None = None,
        seed: int = 0,
        opacities: np.ndarray | None = None,
    ) -> "SurfelModel":
        """opacities: per-surfel initial opacity (default cfg.init_opacity for all)."""
        rng = np.random.default_rng(seed)
        n = len(points)
        spacing = np.clip(mean_spacing(points), 1e-4, None) * cfg.init_scale
        scales = np.stack([np.log(spacing), np.log(spacing), np.full(n, FLAT_LOG_SCALE)], axis=1)
        colours = np.full((n, 3), 0.5) if colours is None else np.clip(colours, 0.02, 0.98)
        p = {
            "means": torch.tensor(points, dtype=torch.float32),
            "quats": torch.tensor(quats_from_normals(normals, rng), dtype=torch.float32),
            "scales": torch.tensor(scales, dtype=torch.float32),
            "opacities": torch.logit(
                torch.as_tensor(cfg.init_opacity if opacities is None else opacities, dtype=torch.float32).expand(n)
            ).clone(),
        }
        k = (cfg.sh_degree + 1) ** 2
        if cfg.colour_model == "shaded":
            p["albedo"] = torch.logit(torch.tensor(colours, dtype=torch.float32))
            if cfg.view_residual:
                p["shN"] = torch.zeros(n, k - 1, 3)
        else:
            p["sh0"] = torch.tensor((colours - 0.5) / SH_C0, dtype=torch.float32)[:, None, :]
            p["shN"] = torch.zeros(n, k - 1, 3)
        return cls(p, cfg.colour_model, cfg.sh_degree, cfg.view_residual, lowpass=cfg.lowpass)

    # --- accessors ---
    @property
    def n(self) -> int:
        return self.params["means"].shape[0]

    @property
    def device(self) -> torch.device:
        return self.params["means"].device

    def normals(self) -> torch.Tensor:
        """Surfel normals [N,3] (the rotation's z axis); sign is arbitrary."""
        return quat_axes(self.params["quats"])[2]

    def albedo(self) -> torch.Tensor:
        return torch.sigmoid(self.params["albedo"])

    def irradiance(self, n: torch.Tensor) -> torch.Tensor:
        return (irradiance_basis(n) @ self.light).clamp_min(0.0)

    def colours_for(self, cameras: Cameras) -> tuple[torch.Tensor, int | None]:
        """What to hand the rasterizer: per-camera colours [C,N,3] (shaded) or SH [N,K,3]."""
        if self.colour_model == "sh":
            return torch.cat([self.params["sh0"], self.params["shN"]], dim=1), self.sh_degree
        means = self.params["means"]
        n = self.normals()
        to_cam = cameras.centers[:, None, :] - means[None]  # [C,N,3]
        facing = torch.sign((to_cam * n[None]).sum(-1, keepdim=True))
        facing = torch.where(facing == 0, torch.ones_like(facing), facing)
        shade = self.irradiance(n[None] * facing)  # [C,N,3]
        colour = self.albedo()[None] * shade
        if self.view_residual:
            from ..render.sh import eval_sh

            dirs = F.normalize(-to_cam, dim=-1)
            coeffs = torch.cat([torch.zeros_like(self.params["shN"][:, :1]), self.params["shN"]], dim=1)
            colour = colour + torch.stack([eval_sh(self.sh_degree, coeffs, d) for d in dirs])
        return colour, None

    def render(
        self,
        cameras: Cameras,
        backend: str = "auto",
        background=None,
        depth_convention: str = "intersection",
        shading: str = "surfel",
    ) -> RenderOutput:
        """shading (shaded colour model only): "surfel" shades each surfel by its own normal;
        "depth" renders albedo and shades each pixel by the normal of the rendered depth (the
        surfel normal where the depth has none), so shading can only change by moving the surface."""
        deferred = shading == "depth" and self.colour_model == "shaded"
        if deferred:
            colours, sh_degree = self.albedo()[None].expand(len(cameras), -1, -1), None
        else:
            colours, sh_degree = self.colours_for(cameras)
        bg = None
        if background is not None:
            bg = torch.as_tensor(background, dtype=torch.float32, device=self.device).expand(len(cameras), 3)
        p = self.params
        out = rasterize(
            p["means"],
            p["quats"],
            torch.exp(p["scales"]),
            torch.sigmoid(p["opacities"]),
            colours,
            cameras,
            sh_degree=sh_degree,
            backgrounds=None if deferred else bg,
            backend=backend,
            depth_convention=depth_convention,
            lowpass=self.lowpass,
        )
        if deferred:
            dn = out.depth_normals
            n = torch.where(dn.norm(dim=-1, keepdim=True) > 0.5, dn, F.normalize(out.normals, dim=-1))
            out.rgb = (out.rgb * self.irradiance(n)).clamp(0, 1)
            if bg is not None:
                out.rgb = out.rgb + (1.0 - out.alpha) * bg[:, None, None, :]
        return out

    # --- export ---
    def baked_colours(self, outward_from: torch.Tensor | None = None) -> torch.Tensor:
        """A view-independent colour per surfel [N,3] for viewers (shading at the outward normal)."""
        with torch.no_grad():
            if self.colour_model == "sh":
                return (self.params["sh0"][:, 0] * SH_C0 + 0.5).clamp(0, 1)
            n = self.normals()
            if outward_from is not None:
                s = torch.sign(((self.params["means"] - outward_from) * n).sum(-1, keepdim=True))
                n = n * torch.where(s == 0, torch.ones_like(s), s)
            return (self.albedo() * self.irradiance(n)).clamp(0, 1)

    def state(self) -> dict:
        return {
            "params": {k: v.detach().cpu() for k, v in self.params.items()},
            "light": self.light.detach().cpu(),
            "colour_model": self.colour_model,
            "sh_degree": self.sh_degree,
            "view_residual": self.view_residual,
            "lowpass": self.lowpass,
        }

    @classmethod
    def from_state(cls, state: dict, device="cpu") -> "SurfelModel":
        m = cls(
            {k: v.clone() for k, v in state["params"].items()},
            state["colour_model"],
            state["sh_degree"],
            state["view_residual"],
            state["light"].clone(),
            state.get("lowpass", "gsplat"),
        )  # runs saved before the option rendered as gsplat does
        return m.to(device)


def write_splats_ply(model: SurfelModel, path: str | Path, transform=None) -> None:
    """Write the 3DGS PLY layout viewers read (SuperSplat etc.): x,y,z, nx,ny,nz, f_dc_0..2,
    f_rest_*, opacity (logit), scale_0..2 (log; the third tiny), rot_0..3 (wxyz).

    transform: optional (center [3], scale) to write in the input's units: x_in = x / scale + center.
    """
    from plyfile import PlyData, PlyElement

    from ..io import atomic_path

    with torch.no_grad():
        means = model.params["means"].detach().cpu().numpy().astype(np.float64)
        log_scales = model.params["scales"].detach().cpu().numpy().astype(np.float64)
        if transform is not None:
            center, scale = transform
            means = means / scale + np.asarray(center)
            log_scales = log_scales - math.log(scale)
        if model.colour_model == "sh":
            dc = model.params["sh0"][:, 0].cpu().numpy()
            rest = model.params["shN"].cpu().numpy()
        else:
            outward = model.params["means"].detach().mean(0)
            dc = (model.baked_colours(outward).cpu().numpy() - 0.5) / SH_C0
            rest = np.zeros((model.n, 0, 3))
        normals = model.normals().detach().cpu().numpy()
        quats = F.normalize(model.params["quats"].detach(), dim=-1).cpu().numpy()
        opac = model.params["opacities"].detach().cpu().numpy()
    # f_rest is stored channel-major, as 3DGS does: all coefficients of R, then G, then B.
    rest_flat = rest.transpose(0, 2, 1).reshape(model.n, -1)
    fields = (
        [
            ("x", means[:, 0]),
            ("y", means[:, 1]),
            ("z", means[:, 2]),
            ("nx", normals[:, 0]),
            ("ny", normals[:, 1]),
            ("nz", normals[:, 2]),
        ]
        + [(f"f_dc_{i}", dc[:, i]) for i in range(3)]
        + [(f"f_rest_{i}", rest_flat[:, i]) for i in range(rest_flat.shape[1])]
        + [("opacity", opac)]
        + [(f"scale_{i}", log_scales[:, i]) for i in range(3)]
        + [(f"rot_{i}", quats[:, i]) for i in range(4)]
    )
    arr = np.empty(model.n, dtype=[(name, "f4") for name, _ in fields])
    for name, values in fields:
        arr[name] = values
    with atomic_path(path) as tmp:
        PlyData([PlyElement.describe(arr, "vertex")]).write(str(tmp))


def read_splats_ply(path: str | Path) -> dict[str, np.ndarray]:
    """Read a 3DGS-layout PLY into arrays: means, quats, log_scales, opacity_logits, sh (dc+rest).

    Anything else (a truncated file, a forged header, a mesh without the 3DGS fields) is a
    PrivsplatError saying what is missing.
    """
    from plyfile import PlyData, PlyParseError

    from ..io import check_ply_header

    path = Path(path)
    if not path.is_file():
        raise PrivsplatError(f"splat file {path} does not exist; pass the splats.ply a fit wrote")
    counts = check_ply_header(path, "splat file")  # before plyfile allocates for the claimed count
    if "vertex" not in counts:
        raise PrivsplatError(f"splat file {path} has no 'vertex' element; it is not a 3DGS splat PLY")
    try:
        v = PlyData.read(str(path))["vertex"].data
    except (PlyParseError, ValueError, KeyError, IndexError, EOFError, struct.error, UnicodeDecodeError) as e:
        raise PrivsplatError(f"splat file {path} cannot be read ({type(e).__name__}: {e}); re-export it") from None
    names = v.dtype.names or ()
    required = (
        ["x", "y", "z", "opacity"]
        + [f"rot_{i}" for i in range(4)]
        + [f"scale_{i}" for i in range(3)]
        + [f"f_dc_{i}" for i in range(3)]
    )
    missing = [k for k in required if k not in names]
    if missing:
        raise PrivsplatError(
            f"splat file {path} lacks the 3DGS field(s) {missing}; it is not a splat PLY "
            "(a mesh PLY is read by eval, not here)"
        )
    n_rest = sum(1 for k in names if k.startswith("f_rest_"))
    if n_rest % 3 or any(f"f_rest_{i}" not in names for i in range(n_rest)):
        raise PrivsplatError(
            f"splat file {path} has {n_rest} f_rest_* fields; 3DGS stores 3 per SH coefficient, numbered from 0"
        )
    rest = np.stack([v[f"f_rest_{i}"] for i in range(n_rest)], axis=1) if n_rest else np.zeros((len(v), 0))
    rest = rest.reshape(len(v), 3, -1).transpose(0, 2, 1)
    return {
        "means": np.stack([v["x"], v["y"], v["z"]], axis=1),
        "quats": np.stack([v[f"rot_{i}"] for i in range(4)], axis=1),
        "log_scales": np.stack([v[f"scale_{i}"] for i in range(3)], axis=1),
        "opacity_logits": np.asarray(v["opacity"]),
        "sh": np.concatenate([np.stack([v[f"f_dc_{i}"] for i in range(3)], axis=1)[:, None], rest], axis=1),
    }
