"""Bad input gives one clear PrivsplatError, never a deep traceback."""

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from privsplat.data import load_dataset, load_protected, load_rgb  # noqa: E402
from privsplat.errors import PrivsplatError  # noqa: E402


def tiny_nerfstudio(d: Path, n=2) -> Path:
    (d / "images").mkdir(parents=True, exist_ok=True)
    for i in range(n):
        cv2.imwrite(str(d / "images" / f"{i}.png"), np.full((8, 10, 3), 100, np.uint8))
    frames = [
        {"file_path": f"images/{i}.png", "transform_matrix": [[1, 0, 0, i], [0, 1, 0, 0], [0, 0, 1, 3], [0, 0, 0, 1]]}
        for i in range(n)
    ]
    (d / "transforms.json").write_text(json.dumps({"fl_x": 10, "w": 10, "h": 8, "frames": frames}))
    return d


def edit(d: Path, fn):
    meta = json.loads((d / "transforms.json").read_text())
    fn(meta)
    (d / "transforms.json").write_text(json.dumps(meta))


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda m: m.update(frames=[]), "empty frame list"),
        (lambda m: m["frames"][0].update(file_path="images/nope.png"), "does not exist"),
        (lambda m: m["frames"][0].update(transform_matrix=[[float("nan")] * 4] * 4), "finite"),
        (lambda m: m["frames"][0].update(transform_matrix=[[0] * 4] * 4), "singular"),
        (lambda m: m["frames"][0].update(transform_matrix=np.diag([2, 2, 2, 1]).tolist()), "orthonormal"),
        (lambda m: m.pop("fl_x"), "focal length"),
        (lambda m: m.update(fl_x=-3), "positive focal"),
        (lambda m: m.update(fl_x=1e308), "implausible"),
        (lambda m: m.update(cx=1e9), "principal point"),
        (
            lambda m: [
                f.update(transform_matrix=[[1, 0, 0, 1e-9 * i], [0, 1, 0, 0], [0, 0, 1, 3], [0, 0, 0, 1]])
                for i, f in enumerate(m["frames"])
            ],
            "coincide",
        ),
        (lambda m: m.update(camera_model="EQUIRECTANGULAR", k1=0.1), "not supported"),
        (lambda m: m.update(k1=0.1, k4=0.2), "k4"),
        (lambda m: m["frames"][0].update(privsplat_kind="secret"), "privsplat_kind"),
        (
            lambda m: m["frames"][0].update(privsplat_kind="protected", privsplat_magnitude_scale=1.0),
            "no privsplat_manifest.json",
        ),
    ],
)
def test_bad_transforms(tmp_path, mutate, message):
    d = tiny_nerfstudio(tmp_path)
    edit(d, mutate)
    with pytest.raises(PrivsplatError, match=message):
        load_dataset(d)


def test_not_json_and_no_dataset(tmp_path):
    with pytest.raises(PrivsplatError, match="does not exist"):
        load_dataset(tmp_path / "missing")
    with pytest.raises(PrivsplatError, match="no dataset"):
        load_dataset(tmp_path)
    (tmp_path / "transforms.json").write_text("{not json")
    with pytest.raises(PrivsplatError, match="not valid JSON"):
        load_dataset(tmp_path)


def test_corrupt_and_mismatched_images(tmp_path):
    d = tiny_nerfstudio(tmp_path)
    ds = load_dataset(d)
    (d / "images" / "0.png").write_bytes(b"\x89PNG garbage")
    with pytest.raises(PrivsplatError, match="cannot decode"):
        load_rgb(ds.frames[0])
    cv2.imwrite(str(d / "images" / "1.png"), np.zeros((9, 10, 3), np.uint8))
    with pytest.raises(PrivsplatError, match="10x9 but frame"):
        load_rgb(ds.frames[1])


def test_privacy_rule_load_rgb_refuses_protected(protected_head):
    ds = load_dataset(protected_head)
    prot = ds.frames_of("protected")
    assert len(prot) == 6
    with pytest.raises(PrivsplatError, match="protected"):
        load_rgb(prot[0])
    with pytest.raises(PrivsplatError, match="not protected"):
        load_protected(ds.frames_of("rgb")[0])


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 5) | st.floats(allow_nan=True) | st.text(max_size=4),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=3), inner, max_size=3),
    max_leaves=12,
)
frame_like = st.fixed_dictionaries(
    {},
    optional={
        "file_path": st.sampled_from(["images/0.png", "images/0", "x", 3, None]),
        "transform_matrix": st.one_of(
            json_values, st.lists(st.lists(st.floats(-2, 2), min_size=4, max_size=4), min_size=3, max_size=4)
        ),
        "fl_x": json_values,
        "w": json_values,
        "h": json_values,
        "mask_path": json_values,
        "privsplat_kind": st.sampled_from(["rgb", "protected", "x"]),
        "camera_angle_x": json_values,
    },
)
meta_like = st.one_of(
    json_values,
    st.fixed_dictionaries(
        {"frames": st.lists(frame_like, max_size=3)},
        optional={
            "fl_x": json_values,
            "w": json_values,
            "h": json_values,
            "camera_angle_x": json_values,
            "k1": json_values,
            "privsplat_normalisation": json_values,
        },
    ),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(meta=meta_like)
def test_fuzz_transforms_json(tmp_path, meta):
    d = tmp_path / "fuzz"
    shutil.rmtree(d, ignore_errors=True)
    tiny_nerfstudio(d)
    (d / "transforms.json").write_text(json.dumps(meta, allow_nan=True))
    try:
        load_dataset(d, warn_unprotected=False)
    except PrivsplatError:
        pass


matrices = st.one_of(
    st.lists(
        st.lists(st.floats(allow_nan=True, allow_infinity=True, width=32), min_size=4, max_size=4),
        min_size=3,
        max_size=4,
    ).map(np.array),
    st.just(np.zeros((4, 4))),
    st.just(np.ones((2, 2))),
    st.just(np.array("text")),
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(mats=st.lists(matrices, max_size=3), corrupt=st.booleans())
def test_fuzz_cameras_npz(tmp_path, mats, corrupt):
    d = tmp_path / "fuzz_idr"
    shutil.rmtree(d, ignore_errors=True)
    (d / "image").mkdir(parents=True)
    for i in range(2):
        cv2.imwrite(str(d / "image" / f"{i:03d}.png"), np.full((8, 10, 3), 50, np.uint8))
    if corrupt:
        (d / "cameras.npz").write_bytes(b"PK\x03\x04 not a zip")
    else:
        np.savez(d / "cameras.npz", **{f"world_mat_{i}": m for i, m in enumerate(mats)})
    try:
        load_dataset(d, warn_unprotected=False)
    except PrivsplatError:
        pass


def test_transform_matrix_with_a_wrong_last_row_is_refused(tmp_path):
    """Found by the fuzzer above: a rotation that is fine but a last row of zeros made the 4x4
    singular and numpy's inverse raised from deep inside."""
    d = tmp_path / "ns"
    tiny_nerfstudio(d)
    meta = json.loads((d / "transforms.json").read_text())
    meta["frames"] = meta["frames"][:1]
    meta["frames"][0]["transform_matrix"] = [[0, 0, 1, 0], [0, 1, 0, 0], [1, 0, 0, 0], [0, 0, 0, 0]]
    (d / "transforms.json").write_text(json.dumps(meta))
    with pytest.raises(PrivsplatError, match=r"last row must be \[0, 0, 0, 1\]"):
        load_dataset(d, warn_unprotected=False)
