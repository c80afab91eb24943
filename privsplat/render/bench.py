"""`privsplat render-bench`: time the rasterizer backends on head-like surfel scenes.

Prints one JSON document: per backend and case the median forward and forward+backward
times, the number of composited pairs, peak memory and the device. For gsplat it also
times gsplat.rasterization_2dgs called directly, so the wrapper's overhead shows.
"""

from __future__ import annotations

import math
import time

DEFAULT_CASES = ("5000x64", "20000x64", "20000x128", "50000x256")


def head_scene(n: int, size: int, seed: int = 0, device="cpu"):
    """n surfels tangent to a head-sized ellipsoid (metres), one camera 0.5 m away.

    Sizes are set so that every point of the shell is covered about three times (like a
    fitted head); opacities are uniform in [0.3, 0.95]. Returns (means, quats, scales,
    opacities, colors, cameras) with float32 tensors on `device`.
    """
    import numpy as np
    import torch

    from ..cameras import Cameras, intrinsics_from_fov, look_at

    g = torch.Generator().manual_seed(seed)
    radii = torch.tensor([0.08, 0.11, 0.10])
    d = torch.nn.functional.normalize(torch.randn(n, 3, generator=g), dim=-1)
    means = d * radii
    normal = torch.nn.functional.normalize(d / radii**2, dim=-1)  # ellipsoid gradient
    quats = _quat_from_z(normal, torch.rand(n, generator=g) * 2 * math.pi)
    area = 4 * math.pi * float(radii.prod() ** (2 / 3))  # sphere of the same volume, close enough
    sigma = math.sqrt(3.0 * area / (4 * math.pi * n))
    scales = sigma * (0.7 + 0.6 * torch.rand(n, 2, generator=g))
    scales = torch.cat([scales, torch.full((n, 1), 1e-6)], 1)
    opac = 0.3 + 0.65 * torch.rand(n, generator=g)
    colors = torch.rand(n, 3, generator=g)
    K = intrinsics_from_fov(size, size, math.radians(30.0))
    w2c = look_at(np.array([0.05, -0.02, -0.5]), np.zeros(3))
    cams = Cameras.from_numpy(K, w2c, size, size, device=device)
    return [t.to(device) for t in (means, quats, scales, opac, colors)] + [cams]


def _quat_from_z(normal, twist):
    """wxyz quaternions whose rotation maps +z to `normal`, then twists about it."""
    import torch

    z = torch.tensor([0.0, 0.0, 1.0]).expand_as(normal)
    axis = torch.linalg.cross(z, normal)
    s = axis.norm(dim=-1, keepdim=True)
    c = normal[:, 2:3]
    angle = torch.atan2(s, c)
    axis = torch.where(s > 1e-8, axis / s.clamp_min(1e-12), torch.tensor([1.0, 0.0, 0.0]))
    q_align = torch.cat([torch.cos(angle / 2), axis * torch.sin(angle / 2)], 1)
    q_twist = torch.stack([torch.cos(twist / 2), 0 * twist, 0 * twist, torch.sin(twist / 2)], 1)
    w1, v1 = q_align[:, :1], q_align[:, 1:]
    w2, v2 = q_twist[:, :1], q_twist[:, 1:]
    return torch.cat([w1 * w2 - (v1 * v2).sum(-1, keepdim=True), w1 * v2 + w2 * v1 + torch.linalg.cross(v1, v2)], 1)


def _training_loss(out):
    """What a 2DGS step backpropagates: colour, alpha, normal consistency, distortion."""
    consistency = (1 - (out.normals * out.depth_normals).sum(-1)).mean()
    return out.rgb.mean() + out.alpha.mean() + consistency + out.distortion.mean() + 1e-2 * out.depth_expected.mean()


def _sync(device):
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize()


def _time(fn, repeats, device):
    times = []
    for _ in range(repeats):
        _sync(device)
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append((time.perf_counter() - t0) * 1e3)
    times.sort()
    return times[len(times) // 2]


def _peak_memory_mb(device) -> float:
    import resource

    import torch

    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def bench_case(backend: str, device: str, n: int, size: int, repeats: int, seed: int = 0) -> dict:
    """Median fwd and fwd+bwd milliseconds of `rasterize` (and of raw gsplat for backend gsplat)."""
    import torch

    from . import rasterize

    dev = torch.device(device)
    means, quats, scales, opac, colors, cams = head_scene(n, size, seed, dev)
    params = [t.clone().requires_grad_(True) for t in (means, quats, scales, opac, colors)]
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)

    def fwd():
        return rasterize(*params, cams, backend=backend)

    def fwd_bwd():
        out = fwd()
        _training_loss(out).backward()
        for p in params:
            p.grad = None

    out = fwd()  # warm-up (gsplat compiles its extension on the first call)
    n_pairs = out.meta.get("n_pairs", out.meta.get("n_isects"))
    fwd_bwd()
    result = {
        "backend": backend,
        "device": _device_name(dev),
        "n_surfels": n,
        "size": size,
        "fwd_ms": round(_time(fwd, repeats, dev), 3),
        "fwd_bwd_ms": round(_time(fwd_bwd, repeats, dev), 3),
        "n_pairs": n_pairs,
        "n_candidates": out.meta.get("n_candidates"),
        "coverage": round(float((out.alpha > 0.5).float().mean()), 3),
    }
    if backend == "gsplat":
        result["raw_gsplat_fwd_bwd_ms"] = round(_raw_gsplat_ms(params, cams, repeats, dev), 3)
        result["wrapper_overhead"] = round(result["fwd_bwd_ms"] / result["raw_gsplat_fwd_bwd_ms"], 3)
    result["peak_memory_mb"] = round(_peak_memory_mb(dev), 1)
    result["peak_memory_kind"] = "cuda max_memory_allocated" if dev.type == "cuda" else "process peak RSS"
    return result


def _raw_gsplat_ms(params, cams, repeats, dev) -> float:
    from gsplat import rasterization_2dgs

    from .gsplat_backend import gsplat_inputs

    def step():
        render, alpha, normals, surf, distort, median, _ = rasterization_2dgs(
            *gsplat_inputs(*params, cams, None), render_mode="RGB+ED", distloss=True
        )
        consistency = (1 - (normals * surf).sum(-1)).mean()
        loss = render[..., :3].mean() + alpha.mean() + consistency + distort.mean() + 1e-2 * render[..., 3:].mean()
        loss.backward()
        for p in params:
            p.grad = None

    step()
    return _time(step, repeats, dev)


def _device_name(dev) -> str:
    import platform

    import torch

    if dev.type == "cuda":
        return torch.cuda.get_device_name(dev)
    return f"{platform.processor() or platform.machine()} ({torch.get_num_threads()} threads)"


def plan_backends(backends: str) -> list[tuple[str, str]]:
    import torch

    cuda = torch.cuda.is_available()
    if backends == "auto":
        return [("gsplat", "cuda")] if cuda else [("numba", "cpu")]
    if backends == "numba":
        return [("numba", "cpu")]
    if backends == "torch":
        return [("torch", "cuda" if cuda else "cpu")]
    if backends == "gsplat":
        if not cuda:
            from ..errors import PrivsplatError

            raise PrivsplatError("backend gsplat needs CUDA; run with --backends torch on this machine")
        return [("gsplat", "cuda")]
    return [("torch", "cpu"), ("numba", "cpu")] + ([("torch", "cuda"), ("gsplat", "cuda")] if cuda else [])


def parse_case(text: str) -> tuple[int, int]:
    from ..errors import PrivsplatError

    try:
        n, size = text.lower().split("x")
        return int(n), int(size)
    except ValueError:
        raise PrivsplatError(f"a case is N_SURFELSxIMAGE_SIZE like 20000x64, got {text!r}") from None
