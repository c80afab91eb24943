"""`privsplat` command line: one tyro dataclass per subcommand, each with a run() method.

Command modules must stay light at import time (import torch/open3d inside run()),
so that `privsplat --help` is quick.
"""

from __future__ import annotations

import importlib
import sys

# name -> (module, class). Each class is a dataclass whose fields are the flags.
COMMANDS: dict[str, tuple[str, str]] = {
    "render-bench": ("privsplat.render.bench", "RenderBench"),
    "synth": ("privsplat.data.synth", "Synth"),
    "protect": ("privsplat.privacy.protect", "Protect"),
    "fit": ("privsplat.train.fit", "Fit"),
    "mesh": ("privsplat.train.fit", "Mesh"),
    "demo": ("privsplat.demo", "Demo"),
    "eval": ("privsplat.eval.commands", "Eval"),
    "privacy-eval": ("privsplat.eval.commands", "PrivacyEval"),
}


def _load(name: str):
    module, cls = COMMANDS[name]
    return getattr(importlib.import_module(module), cls)


def main(argv: list[str] | None = None) -> int:
    import tyro

    from .errors import PrivsplatError

    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        if argv and argv[0] in COMMANDS:
            # One subcommand: import only its module. A command may derive its defaults from
            # the arguments (e.g. `fit --preset head512` sets the config defaults that
            # explicit flags then override) through a `defaults_from_args` classmethod.
            cls = _load(argv[0])
            default = cls.defaults_from_args(argv[1:]) if hasattr(cls, "defaults_from_args") else None
            cmd = tyro.cli(cls, args=argv[1:], default=default, prog=f"privsplat {argv[0]}",
                           description=" ".join((cls.__doc__ or "").strip().split("\n\n")[0].split()))
        else:
            commands = {name: _load(name) for name in COMMANDS}
            cmd = tyro.extras.subcommand_cli_from_dict(
                commands, args=argv, prog="privsplat",
                description="Privacy-preserving reconstruction with 2D Gaussian surfels.")
        cmd.run()
    except PrivsplatError as e:
        print(f"privsplat: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("privsplat: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into e.g. `head`, which stopped reading
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
