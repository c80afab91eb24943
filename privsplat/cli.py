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
    "eval": ("privsplat.eval.commands", "Eval"),
}


def _load(name: str):
    module, cls = COMMANDS[name]
    return getattr(importlib.import_module(module), cls)


def main(argv: list[str] | None = None) -> int:
    import tyro

    from .errors import PrivsplatError

    argv = sys.argv[1:] if argv is None else argv
    commands = {name: _load(name) for name in COMMANDS}
    try:
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
    return 0


if __name__ == "__main__":
    sys.exit(main())
