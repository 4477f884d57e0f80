"""The output folder of a run: g2gsim knows what it wrote there, so a rerun never mixes two runs.

Every file a run writes is listed in the folder's manifest (``.g2gsim-run.json``) before it is
written (the manifest itself is written first), and the files of the folders g2gsim fills as
it goes (the streamed parts in ``chunks/``, the figures in ``plots/``) count as g2gsim's by
their names, so even a run killed mid-write leaves a folder that a rerun can clear.
Running into a folder again first removes what the manifest lists; a folder holding any file
g2gsim did not write (a user's notes, another tool's output, results of a g2gsim version
without a manifest) is refused with an error naming those files, and nothing is removed.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Iterable
from pathlib import Path

from g2gsim.kernel.streaming import CHUNK_FOLDER

__all__ = ["MANIFEST", "OutputFolder", "OutputFolderError"]

#: The manifest of a run's output folder.
MANIFEST = ".g2gsim-run.json"
_PART = re.compile(r"(part-\d{5}\.parquet|\.part-\d{5}\.parquet\.\d+\.tmp)")
#: Folders g2gsim fills as it goes, and the names of the files it writes in them (one level down for chunks).
_FILLED = {CHUNK_FOLDER: 3, "plots": 2}


class OutputFolderError(ValueError):
    """The output folder cannot be used: it is a file, not writable, or holds files g2gsim did not write."""


class OutputFolder:
    """A run's output folder and the manifest of what g2gsim wrote in it."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.files: list[str] = []

    @property
    def manifest(self) -> Path:
        """The manifest file."""
        return self.path / MANIFEST

    def _listed(self) -> set[str]:
        """What an earlier run's manifest lists (empty without a readable one)."""
        try:
            recorded = json.loads(self.manifest.read_text())
        except (OSError, ValueError):
            return set()
        files = recorded.get("files", []) if isinstance(recorded, dict) else []
        return {f for f in files if isinstance(f, str)}

    def _is_ours(self, relative: str, listed: set[str]) -> bool:
        if relative.startswith(MANIFEST) or relative in listed:
            return True
        parts = relative.split("/")
        if _FILLED.get(parts[0]) != len(parts):
            return False
        if parts[0] == CHUNK_FOLDER:
            return _PART.fullmatch(parts[-1]) is not None
        return f"{parts[0]}/" in listed and parts[-1].endswith(".png")

    def foreign_files(self) -> list[str]:
        """Files in the folder that g2gsim's manifest does not account for (relative paths)."""
        if not self.path.is_dir():
            return []
        listed = self._listed()
        found = (p.relative_to(self.path).as_posix() for p in _files(self.path))
        return sorted(f for f in found if not self._is_ours(f, listed))

    def claim(self) -> None:
        """Make the folder ready for a new run: refuse it (OutputFolderError) when it is a file,
        cannot be written or holds foreign files; else remove the previous run's files and
        write a fresh manifest."""
        self._check_usable()
        foreign = self.foreign_files()
        if foreign:
            shown = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
            raise OutputFolderError(
                f"--out {self.path}: the folder holds files g2gsim did not write ({shown}); "
                "g2gsim only replaces its own earlier results: choose another folder, or move those files"
            )
        self._clear()
        self.files = []
        self._write_manifest()

    def _check_usable(self) -> None:
        if self.path.exists() and not self.path.is_dir():
            raise OutputFolderError(f"--out {self.path}: is a file, not a folder; give a folder for the results")
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputFolderError(f"--out {self.path}: cannot create the folder ({exc.strerror or exc})") from None
        if not os.access(self.path, os.W_OK | os.X_OK):
            raise OutputFolderError(f"--out {self.path}: the folder is not writable; give a folder you can write to")

    def _clear(self) -> None:
        """Remove the files of an earlier run (checked: every file there is g2gsim's), then emptied folders."""
        for path in _files(self.path):
            path.unlink()
        folders = sorted(_folders(self.path), key=lambda p: -len(p.parts))
        for folder in folders:
            if not any(folder.iterdir()):
                folder.rmdir()

    def add(self, names: Iterable[str]) -> None:
        """Record files about to be written (paths relative to the folder; ``"plots/"``: the
        figures of that folder) in the manifest, before writing them."""
        for name in names:
            if name not in self.files:
                self.files.append(name)
        self._write_manifest()

    def remove_chunks(self) -> None:
        """Remove the streamed chunks once the final tables hold every row."""
        shutil.rmtree(self.path / CHUNK_FOLDER, ignore_errors=True)

    def _write_manifest(self) -> None:
        text = json.dumps({"written_by": "g2gsim", "files": sorted(self.files)}, indent=1)
        tmp = self.manifest.with_name(f"{MANIFEST}.{os.getpid()}.tmp")
        tmp.write_text(text + "\n")
        os.replace(tmp, self.manifest)


def _is_folder(path: Path) -> bool:
    return path.is_dir() and not path.is_symlink()


def _files(root: Path) -> list[Path]:
    """Every file under `root` (symbolic links count as files, never followed)."""
    return [p for p in root.rglob("*") if not _is_folder(p)]


def _folders(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if _is_folder(p)]
