"""The `privsplat` command line: one thin module per subcommand, each a tyro dataclass whose fields
are the flags and whose run() calls into the core. Nothing in the core imports this package.

Subcommand modules are imported only when their command runs, so `privsplat --help` stays quick
(it reads the one-line summaries below instead of importing torch and open3d).
"""

from __future__ import annotations

import importlib
import os
import signal
import sys

# name -> (module, class, one-line summary for `privsplat --help`)
COMMANDS: dict[str, tuple[str, str, str]] = {
    "prepare": ("prepare", "Prepare", "on your machine: photos or a video -> poses (SfM) -> an undistorted dataset"),
    "synth": ("synth", "Synth", "render a multi-view test dataset of a mesh, with ground truth"),
    "protect": (
        "protect",
        "Protect",
        "on your machine: keep neutral views as RGB, turn sensitive views into gradient magnitudes",
    ),
    "fit": ("fit", "Fit", "two-stage surfel fit of a (protected) dataset, then a TSDF mesh"),
    "mesh": ("mesh", "Mesh", "re-extract the mesh of a finished run"),
    "eval": ("eval", "Eval", "geometry metrics of a mesh against ground truth"),
    "privacy-eval": ("privacy_eval", "PrivacyEval", "face recognition on what an attacker could hold"),
    "report": ("report", "Report", "write RUN/report.html: renders, |g|, normals, loss curves, mesh turntable"),
    "batch": ("batch", "Batch", "many protected datasets as Ray tasks, with a summary of reports"),
    "demo": ("demo", "Demo", "synth -> protect -> fit -> mesh -> score on the bundled head"),
    "render-bench": ("render_bench", "RenderBench", "time the surfel rasterizer (JSON)"),
}


# import name -> pip name of the dependencies (pyproject.toml) whose import name differs
_PIP_NAMES = {
    "cv2": "opencv-python-headless",
    "pytorch_msssim": "pytorch-msssim",
    "yaml": "pyyaml",
    "dlib": "dlib-bin",
}


def missing_module_message(e: ModuleNotFoundError) -> str | None:
    """What to tell a user whose environment lacks a package privsplat imports (a partial install, a
    venv without the dependencies, a GPU image missing one): its name and the pip command, instead of
    the traceback from wherever it was first imported. None for a module of privsplat's own (a bug:
    the traceback is what helps)."""
    top = (e.name or "").split(".")[0]
    if top in ("", "privsplat"):
        return None
    pip = _PIP_NAMES.get(top, top.replace("_", "-"))
    return (
        f"the Python package {top!r} is not installed in this environment ({sys.executable}); "
        f"install it with `python -m pip install {pip}`, or reinstall privsplat with its dependencies "
        "(the README's two commands)"
    )


def load_command(name: str):
    module, cls, _ = COMMANDS[name]
    return getattr(importlib.import_module(f"{__name__}.{module}"), cls)


def _usage() -> str:
    width = max(map(len, COMMANDS))
    lines = [
        "usage: privsplat COMMAND [--help] [flags]",
        "",
        "Privacy-preserving reconstruction with 2D Gaussian surfels.",
        "",
        "commands:",
    ]
    lines += [f"  {name:<{width}}  {summary}" for name, (_, _, summary) in COMMANDS.items()]
    lines += ["", "Run `privsplat COMMAND --help` for a command's flags."]
    return "\n".join(lines)


def _description(cls) -> str:
    return " ".join((cls.__doc__ or "").strip().split("\n\n")[0].split())


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0 if argv else 2
    if argv[0] not in COMMANDS:
        print(f"privsplat: error: unknown command {argv[0]!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    from ..threads import configure_cpu_threads

    # Before torch is imported: OpenMP reads its wait policy once, at load (see threads.py).
    configure_cpu_threads(0)
    import tyro

    from ..errors import PrivsplatError

    name, args = argv[0], argv[1:]
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        cls = load_command(name)
        prog, description = f"privsplat {name}", _description(cls)
        if hasattr(cls, "parse"):
            cmd = cls.parse(args, prog, description)
        else:
            cmd = tyro.cli(cls, args=args, prog=prog, description=description)
        cmd.run()
    except PrivsplatError as e:
        print(f"privsplat: error: {e}", file=sys.stderr)
        return 2
    except ModuleNotFoundError as e:
        message = missing_module_message(e)
        if message is None:
            raise
        print(f"privsplat: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("privsplat: interrupted; nothing half-written was left behind", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into e.g. `head`, which stopped reading
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    finally:
        signal.signal(signal.SIGTERM, previous)
    return 0


def _terminate(signum, frame):
    """SIGTERM (a scheduler, `kill`) unwinds like Ctrl-C, so temporary outputs are removed."""
    raise KeyboardInterrupt
