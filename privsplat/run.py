"""A run folder: what `privsplat fit` writes, and the one way every command reopens it.

Layout: config.yaml (the data folder, preset, device and the full FitConfig), checkpoints/latest.pt,
splats.ply, mesh.ply, metrics.json, losses.jsonl, renders/, report.html.

Run folders travel between people (a fit may run on someone else's server), so opening one must
never execute what is inside it: config.yaml is read with yaml.safe_load and checkpoints hold only
tensors and plain data (numbers, strings, lists, dicts) and are loaded with
`torch.load(weights_only=True)`, which refuses any other pickled object.
"""

from __future__ import annotations

import logging
import pickle
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from .data import Dataset, load_dataset
from .errors import PrivsplatError
from .io import atomic_path
from .train.config import FitConfig

log = logging.getLogger("privsplat")


@dataclass(frozen=True)
class RunConfig:
    """What config.yaml records about a run."""

    data: Path
    preset: str
    device: str
    config: FitConfig
    max_size: int | None = None


@dataclass(frozen=True)
class RunFolder:
    path: Path

    # --- paths ---
    @property
    def config_path(self) -> Path:
        return self.path / "config.yaml"

    @property
    def checkpoint_path(self) -> Path:
        return self.path / "checkpoints" / "latest.pt"

    @property
    def metrics_path(self) -> Path:
        return self.path / "metrics.json"

    @property
    def losses_path(self) -> Path:
        return self.path / "losses.jsonl"

    @property
    def mesh_path(self) -> Path:
        return self.path / "mesh.ply"

    @property
    def splats_path(self) -> Path:
        return self.path / "splats.ply"

    @property
    def renders_dir(self) -> Path:
        return self.path / "renders"

    @property
    def report_path(self) -> Path:
        return self.path / "report.html"

    # --- opening ---
    @classmethod
    def open(cls, path: str | Path, flag: str = "--run") -> "RunFolder":
        """An existing, finished-or-resumable run folder; a clear error for anything else."""
        run = cls(Path(path))
        if not run.path.is_dir():
            raise PrivsplatError(f"{flag} {run.path} is not a folder; pass a run folder written by `privsplat fit`")
        if not run.config_path.is_file() or not run.checkpoint_path.is_file():
            raise PrivsplatError(
                f"{flag} {run.path} is not a privsplat run folder (needs config.yaml and "
                "checkpoints/latest.pt, as `privsplat fit --out RUN` writes them)"
            )
        return run

    def write_config(self, data: Path, preset: str, device: str, cfg: FitConfig, max_size: int | None = None) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        with atomic_path(self.config_path) as tmp:
            tmp.write_text(
                yaml.safe_dump(
                    {
                        "data": str(Path(data).resolve()),
                        "preset": preset,
                        "device": str(device),
                        "max_size": max_size,
                        "config": cfg.to_dict(),
                    },
                    sort_keys=False,
                )
            )

    def read_config(self) -> RunConfig:
        try:
            saved = yaml.safe_load(self.config_path.read_text())
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
            raise PrivsplatError(
                f"{self.config_path} is unreadable ({type(e).__name__}); it must be the "
                "config.yaml `privsplat fit` wrote"
            ) from None
        if (
            not isinstance(saved, dict)
            or not isinstance(saved.get("data"), str)
            or not isinstance(saved.get("config"), dict)
        ):
            raise PrivsplatError(
                f"{self.config_path} is not a privsplat run config (needs 'data' and "
                "'config' entries); was it written by `privsplat fit`?"
            )
        max_size = saved.get("max_size")
        if max_size is not None and (not isinstance(max_size, int) or isinstance(max_size, bool) or max_size < 1):
            raise PrivsplatError(f"{self.config_path}: max_size must be a positive integer or null")
        return RunConfig(
            Path(saved["data"]),
            str(saved.get("preset", "custom")),
            str(saved.get("device", "auto")),
            FitConfig.from_dict(saved["config"], where=str(self.config_path)),
            max_size,
        )

    def load_dataset(self, quiet: bool = False) -> Dataset:
        """The dataset the run was fitted on (verified against its manifest, as at fit time)."""
        saved = self.read_config()
        data = saved.data
        if not data.is_dir():
            raise PrivsplatError(
                f"run {self.path} was fitted on {data}, which does not exist any more; the run's "
                "cameras come from that folder, so restore it (or edit 'data' in config.yaml)"
            )
        return load_dataset(data, warn_unprotected=not quiet, max_size=saved.max_size)

    # --- checkpoints ---
    def save_checkpoint(self, state: dict[str, Any]) -> None:
        import torch

        self.checkpoint_path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(self.checkpoint_path) as tmp:
            torch.save(state, tmp)

    def load_checkpoint(self, device: Any = "cpu") -> dict[str, Any]:
        """The checkpoint's state. Only tensors and plain data are accepted: anything else (a pickled
        object that would run code, a foreign file) is refused without being executed."""
        import torch

        path = self.checkpoint_path
        if not path.is_file():
            raise PrivsplatError(f"{path} does not exist; the run has no checkpoint (start the fit again)")
        try:
            state = torch.load(path, map_location=device, weights_only=True)
        except (
            pickle.UnpicklingError,
            RuntimeError,
            EOFError,
            zipfile.BadZipFile,
            OSError,
            ValueError,
            AttributeError,
            TypeError,
            KeyError,
            IndexError,
            struct.error,
            OverflowError,
        ) as e:
            reason = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
            raise PrivsplatError(
                f"checkpoint {path} was refused: it is corrupt, incomplete or holds more than "
                f"tensors and plain data ({reason}). privsplat never runs code from a run "
                "folder; re-run the fit to get a fresh checkpoint"
            ) from None
        if not isinstance(state, dict) or not isinstance(state.get("model"), dict):
            raise PrivsplatError(f"checkpoint {path} holds no privsplat model; re-run `privsplat fit`")
        return state

    def load_model(self, device: Any = "cpu"):
        from .train.model import SurfelModel

        state = self.load_checkpoint(device)
        try:
            return SurfelModel.from_state(state["model"], device)
        except (KeyError, TypeError, ValueError, AttributeError, RuntimeError) as e:
            raise PrivsplatError(
                f"checkpoint {self.checkpoint_path} holds an incomplete model "
                f"({type(e).__name__}: {e}); re-run `privsplat fit`"
            ) from None
