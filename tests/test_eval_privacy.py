import json
import sys

import numpy as np
import pytest

pytest.importorskip("dlib", reason="face-recognition extra not installed (pip install -e .[fr])")
pytest.importorskip("face_recognition_models", reason="face-recognition extra not installed")

from privsplat.commands.privacy_eval import PrivacyEval  # noqa: E402
from privsplat.errors import PrivsplatError  # noqa: E402
from privsplat.eval import privacy  # noqa: E402
from privsplat.privacy.sigma import SigmaParams, gradient_magnitude  # noqa: E402


@pytest.fixture(scope="module")
def astronaut():
    from skimage import data

    return data.astronaut()  # public domain, shipped with scikit-image


def mild_augment(img: np.ndarray, seed: int = 0) -> np.ndarray:
    """Brightness/contrast change, sensor noise and a downsample+upsample: same person, new pixels."""
    import cv2

    a = img.astype(np.float32) * 0.85 + 20 + np.random.default_rng(seed).normal(0, 3, img.shape)
    a = np.clip(a, 0, 255).astype(np.uint8)
    h, w = img.shape[:2]
    return cv2.resize(cv2.resize(a, (w // 2, h // 2), interpolation=cv2.INTER_AREA), (w, h))


def test_augmented_copy_is_verified_and_protected_version_is_not(astronaut):
    face = privacy.find_face(astronaut)
    assert face is not None and face.points.shape == (5, 2)
    ref = privacy.face_descriptor(astronaut, face)
    assert ref.shape == (128,)
    d_aug = privacy.descriptor_distance(ref, privacy.face_descriptor(mild_augment(astronaut), face))
    mag = gradient_magnitude(astronaut, SigmaParams())  # 64 x 64, scaled to 0..1 as the report does
    d_prot = privacy.descriptor_distance(ref, privacy.face_descriptor(mag / mag.max(), face))
    assert d_aug < 0.3 < privacy.VERIFY_THRESHOLD < d_prot


def test_no_face_in_a_flat_image():
    assert privacy.find_face(np.full((64, 64, 3), 0.5, np.float32), max_side=128) is None


def test_cli_writes_a_table_for_a_tiny_set(tmp_path, astronaut, capsys):
    import cv2

    for d in ("orig", "prot", "rend"):
        (tmp_path / d).mkdir()
    views = {"front": astronaut, "mirror": np.ascontiguousarray(astronaut[:, ::-1])}
    for name, img in views.items():
        cv2.imwrite(str(tmp_path / "orig" / f"{name}.png"), img[..., ::-1])
        np.save(tmp_path / "prot" / f"{name}.npy", gradient_magnitude(img, SigmaParams()))
        small = cv2.resize(mild_augment(img), (128, 128), interpolation=cv2.INTER_AREA)
        cv2.imwrite(str(tmp_path / "rend" / f"{name}.png"), small[..., ::-1])
    cv2.imwrite(str(tmp_path / "rend" / "unmatched.png"), astronaut[..., ::-1])  # no original: ignored
    report = PrivacyEval(
        originals=tmp_path / "orig",
        protected=tmp_path / "prot",
        renders=tmp_path / "rend",
        attack="poisson",
        json=tmp_path / "r.json",
        md=tmp_path / "r.md",
    ).run()
    table = (tmp_path / "r.md").read_text()
    assert table.count("\n| ") == 5  # header + original, protected, inverted, renders
    assert "| protected | 0.0% (2," in table
    assert "| model renders | 100.0% (2," in table
    assert table in capsys.readouterr().out
    saved = json.loads((tmp_path / "r.json").read_text())
    assert saved["sets"]["original"]["cross_view"]["verified"] == 1.0  # liveness: mirror matches front
    assert saved["sets"]["inverted (poisson, 2 guesses)"]["same_view"]["pairs"] == 2
    assert saved == json.loads(json.dumps(report))


def test_folder_errors_are_clear(tmp_path, astronaut):
    import cv2

    with pytest.raises(PrivsplatError, match="not a folder"):
        privacy.evaluate_privacy_folders(tmp_path / "missing")
    (tmp_path / "orig").mkdir()
    (tmp_path / "prot").mkdir()
    cv2.imwrite(str(tmp_path / "orig" / "a.png"), astronaut[..., ::-1])
    np.save(tmp_path / "prot" / "b.npy", np.ones((8, 8), np.float32))
    with pytest.raises(PrivsplatError, match="no file matches an original"):
        privacy.evaluate_privacy_folders(tmp_path / "orig", tmp_path / "prot")


def test_missing_dlib_says_how_to_install(monkeypatch):
    privacy.load_face_models.cache_clear()
    monkeypatch.setitem(sys.modules, "dlib", None)  # makes `import dlib` raise ImportError
    try:
        with pytest.raises(PrivsplatError, match=r"pip install -e \.\[fr\]"):
            privacy.load_face_models()
    finally:
        privacy.load_face_models.cache_clear()
