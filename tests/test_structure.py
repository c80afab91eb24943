"""The layout's rules: no package imports a layer above it, presets travel with the package, run
folders never execute what is inside them."""

from __future__ import annotations

import ast
import os
import pickle
from pathlib import Path

import pytest

import privsplat

ROOT = Path(privsplat.__file__).parent

# Bottom to top: a module may import only its own layer and the layers below it.
LAYERS = [
    {"errors", "io", "assets", "threads"},
    {"cameras"},
    {"data"},
    {"privacy"},
    {"render"},
    {"train"},
    {"run", "mesh"},
    {"eval"},
    {"report"},
    {"pipeline"},
    {"batch"},
    {"commands", "__main__"},
]
LEVEL = {name: i for i, layer in enumerate(LAYERS) for name in layer}


def _top(module_path: Path) -> str:
    rel = module_path.relative_to(ROOT).with_suffix("")
    return rel.parts[0]


def _imports(path: Path) -> set[str]:
    """privsplat top-level names a module imports (absolute or relative)."""
    tree = ast.parse(path.read_text())
    depth = len(path.relative_to(ROOT).parts) - 1  # package depth below privsplat/
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level == 0:
                if node.module and node.module.split(".")[0] == "privsplat":
                    parts = node.module.split(".")[1:]
                    found.add(parts[0] if parts else "__init__")
                continue
            up = node.level - 1  # levels above the module's own package
            if up > depth:
                continue
            if up < depth:  # stays inside the module's own top-level package
                continue
            if node.module:
                found.add(node.module.split(".")[0])
            else:
                found.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.Import):
            for a in node.names:
                parts = a.name.split(".")
                if parts[0] == "privsplat" and len(parts) > 1:
                    found.add(parts[1])
    return found


def test_every_module_has_a_layer():
    tops = {_top(p) for p in ROOT.rglob("*.py") if _top(p) != "__init__"}
    assert tops <= set(LEVEL), f"modules without a layer in this test: {sorted(tops - set(LEVEL))}"


def test_no_module_imports_a_layer_above_it():
    bad = []
    for path in ROOT.rglob("*.py"):
        top = _top(path)
        if top == "__init__":
            continue
        for name in _imports(path):
            if name in LEVEL and LEVEL[name] > LEVEL[top]:
                bad.append(f"{path.relative_to(ROOT)} imports privsplat.{name}")
    assert not bad, "\n".join(bad)


def test_the_layer_check_catches_an_upward_import(tmp_path, monkeypatch):
    fake = ROOT / "data" / "_layer_probe.py"
    fake.write_text("from ..train import trainer\n")
    try:
        assert "train" in _imports(fake)
        assert LEVEL["train"] > LEVEL["data"]
    finally:
        fake.unlink()


def test_presets_are_package_resources_and_flags_override_them():
    from privsplat.commands.fit import Fit
    from privsplat.errors import PrivsplatError
    from privsplat.train.config import available_presets, load_preset

    assert {"head64", "head512", "scene"} <= set(available_presets())
    cmd = Fit.parse(["--data", "d", "--out", "o", "--preset", "head512", "--stage1-iters", "7"], "fit", "")
    assert cmd.config.stage1_iters == 7
    assert cmd.config.stage2_iters == load_preset("head512").stage2_iters == 2000
    assert cmd.config.n_init == load_preset("head512").n_init
    default = Fit.parse(["--data", "d", "--out", "o"], "fit", "")
    assert default.preset == "head64" and default.config == load_preset("head64")
    with pytest.raises(PrivsplatError, match="head512.*head64.*scene"):
        Fit.parse(["--data", "d", "--out", "o", "--preset", "nope"], "fit", "")


def test_a_yaml_preset_file_with_a_bad_value_is_refused_clearly(tmp_path):
    from privsplat.errors import PrivsplatError
    from privsplat.train.config import load_preset

    good = tmp_path / "mine.yaml"
    good.write_text("stage1_iters: 12\nbackground: [1, 1, 1]\n")
    assert load_preset(str(good)).stage1_iters == 12
    for text, what in [
        ("stage1_iters: many\n", "stage1_iters"),
        ("- a\n- b\n", "mapping"),
        ("n_init: 0\n", "n-init"),
        ("lr_means: .nan\n", "lr-means"),
        ("{bad yaml\n", "YAML"),
        ("colour_model: rainbow\n", "colour_model"),
    ]:
        (tmp_path / "bad.yaml").write_text(text)
        with pytest.raises(PrivsplatError, match=what):
            load_preset(str(tmp_path / "bad.yaml"))


class _Payload:
    """Unpickling this runs os.system: what a hostile run folder would ship."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _hostile_run(tmp_path: Path, data: Path) -> tuple[Path, Path]:
    import torch
    import yaml

    from privsplat.train.config import FitConfig

    run = tmp_path / "hostile_run"
    (run / "checkpoints").mkdir(parents=True)
    marker = tmp_path / "PWNED"
    cfg = FitConfig.flat(n_init=200, stage1_iters=4, stage2_iters=2, checkpoint_every=0, mesh_orbit_views=0)
    (run / "config.yaml").write_text(
        yaml.safe_dump({"data": str(data.resolve()), "preset": "custom", "device": "cpu", "config": cfg.to_dict()})
    )
    torch.save({"model": {"params": _Payload(marker)}, "config": cfg.to_dict()}, run / "checkpoints" / "latest.pt")
    (run / "mesh.ply").write_text("ply\n")
    return run, marker


@pytest.mark.parametrize("command", [pytest.param("fit-resume", marks=pytest.mark.slow), "mesh", "privacy-eval"])
def test_a_crafted_checkpoint_never_executes(command, protected_head, synth_head, tmp_path, capsys):
    from privsplat.commands import main

    run, marker = _hostile_run(tmp_path, protected_head)
    # sanity: plain pickle WOULD run the payload (the test's positive control)
    probe = tmp_path / "probe"
    pickle.loads(pickle.dumps(_Payload(probe)))
    assert probe.exists()
    if command == "fit-resume":
        cfg = run / "config.yaml"
        argv = [
            "fit",
            "--data",
            str(protected_head),
            "--out",
            str(run),
            "--resume",
            "--device",
            "cpu",
            "--no-progress",
            "--preset",
            str(_preset_file(tmp_path, cfg)),
        ]
    elif command == "mesh":
        argv = ["mesh", "--run", str(run), "--device", "cpu"]
    else:
        pytest.importorskip("face_recognition_models")
        argv = [
            "privacy-eval",
            "--run",
            str(run),
            "--originals",
            str(synth_head),
            "--attack",
            "none",
            "--device",
            "cpu",
        ]
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    assert "refused" in err and "never runs code" in err, err
    assert "Traceback" not in err
    assert not marker.exists()


def _preset_file(tmp_path: Path, config_yaml: Path) -> Path:
    import yaml

    cfg = yaml.safe_load(config_yaml.read_text())["config"]
    path = tmp_path / "same.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_a_missing_dependency_is_named_with_its_pip_command(monkeypatch, capsys):
    """A package missing from the environment (seen: pytorch_msssim on a GPU image) fails the command
    with its name and pip name, not a traceback from the first call that imports it."""
    import privsplat.commands as commands

    class Broken:
        @classmethod
        def parse(cls, args, prog, description):
            return cls()

        def run(self):
            import importlib

            importlib.import_module("pytorch_msssim_not_here")

    class Renamed(Broken):
        def run(self):
            raise ModuleNotFoundError("No module named 'cv2'", name="cv2")

    monkeypatch.setattr(commands, "load_command", lambda name: Broken)
    assert commands.main(["fit"]) == 2
    err = capsys.readouterr().err
    assert "privsplat: error:" in err and "'pytorch_msssim_not_here'" in err
    assert "pip install pytorch-msssim-not-here" in err and "Traceback" not in err
    monkeypatch.setattr(commands, "load_command", lambda name: Renamed)
    assert commands.main(["fit"]) == 2
    assert "pip install opencv-python-headless" in capsys.readouterr().err

    class Ours(Broken):
        def run(self):
            raise ModuleNotFoundError("No module named 'privsplat.nothing'", name="privsplat.nothing")

    monkeypatch.setattr(commands, "load_command", lambda name: Ours)
    with pytest.raises(ModuleNotFoundError):  # a module of privsplat's own missing is a bug: traceback
        commands.main(["fit"])
