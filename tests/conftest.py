"""Shared fixtures: small, fast, session-scoped synthetic datasets."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def synth_head(tmp_path_factory) -> Path:
    """12 views of the generic ICT head at 32 px (images, masks, transforms.json, gt mesh). Read-only."""
    pytest.importorskip("open3d")  # synth ray-casts with open3d; the GPU machine lacks it
    from privsplat.data.synth import synthesize

    return synthesize(mesh="ict", out=tmp_path_factory.mktemp("synth") / "head", views=12, resolution=32)


@pytest.fixture(scope="session")
def protected_head(synth_head, tmp_path_factory) -> Path:
    """synth_head with its 6 most frontal views protected (by name, no detector), σ at 32 px. Read-only."""
    import json

    from privsplat.privacy.protect import protect

    frames = json.loads((synth_head / "synth.json").read_text())["frames"]
    frontal = sorted(frames, key=lambda f: f["angle_to_face_deg"])[:6]
    out = tmp_path_factory.mktemp("protected") / "head"
    protect(synth_head, out, sensitive=",".join(f["name"] for f in frontal), resolution=32, verbose=False)
    return out


@pytest.fixture
def copy_of(tmp_path):
    """copy_of(folder) -> a writable copy under tmp_path (for tests that tamper with data)."""

    count = iter(range(1000))

    def copy(src: Path) -> Path:
        dst = tmp_path / f"copy{next(count)}_{src.name}"
        shutil.copytree(src, dst)
        return dst

    return copy
