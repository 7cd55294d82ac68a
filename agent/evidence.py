"""Evidence files: the frames that showed a video fault, kept for the ticket.

Collectors attach small artefacts to a PollResult (a JPEG of the frozen or black picture);
this module writes them under state_dir/evidence/<device>/ with the time and the finding in
the name, keeps the newest `per_device` files of each device, and never lets a full or
read-only disk stop the polling (the failure is logged and counted).
"""

from __future__ import annotations

import logging
import re
import time
from pathlib import Path

from collectors.reading import PollResult

log = logging.getLogger("vigil.evidence")

_SAFE = re.compile(r"[^A-Za-z0-9_.-]")
_EXTENSIONS = {"image/jpeg": ".jpg", "image/png": ".png"}


class EvidenceStore:
    def __init__(self, directory: Path, per_device: int):
        self.directory = directory
        self.per_device = per_device
        self.failures = 0

    def keep(self, result: PollResult) -> list[Path]:
        if not result.evidence or self.per_device <= 0:
            return []
        folder = self.directory / _SAFE.sub("_", result.device)
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(result.timestamp))
        written = []
        try:
            folder.mkdir(parents=True, exist_ok=True)
            for item in result.evidence:
                suffix = _EXTENSIONS.get(item.content_type, ".bin")
                path = folder / f"{stamp}-{result.collector}-{_SAFE.sub('_', item.name)}{suffix}"
                path.write_bytes(item.data)
                written.append(path)
            for old in sorted(folder.iterdir())[:-self.per_device]:
                old.unlink()
        except OSError as exc:
            self.failures += 1
            log.warning("cannot keep evidence of %s in %s: %s", result.device, folder,
                        exc.strerror or exc)
        return written

    def files(self, device: str) -> list[Path]:
        folder = self.directory / _SAFE.sub("_", device)
        return sorted(folder.iterdir()) if folder.is_dir() else []

    def path(self, device: str, name: str) -> Path | None:
        """The file named `name` of `device`, if it exists (no path tricks)."""
        if _SAFE.search(name) or name.startswith("."):
            return None
        path = self.directory / _SAFE.sub("_", device) / name
        return path if path.is_file() else None
