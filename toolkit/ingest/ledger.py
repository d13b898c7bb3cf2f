"""Every item's outcome: counts, the progress callback, and the failures file (JSONL).

The ledger is the one place outcomes are recorded, so the summary always adds up:
``seen == indexed + skipped + failed``.
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from toolkit.errors import ValidationError
from toolkit.images.sources import SourceItem

#: Failure stages, in pipeline order (the ``stage`` of a failures record).
STAGES = ("source", "read", "download", "decode", "index", "pipeline")
SKIP_ALREADY = "already indexed"
SKIP_DUPLICATE = "duplicate id in the source"
#: Skipped items kept as examples per reason (the counts cover all of them).
MAX_EXAMPLES = 10


@dataclass(frozen=True)
class IngestProgress:
    """Counts so far, passed to the progress callback after every outcome."""

    seen: int
    indexed: int
    skipped: int
    failed: int
    seconds: float

    @property
    def images_per_second(self) -> float:
        return self.indexed / self.seconds if self.seconds > 0 else 0.0


def default_failures_path(cwd: Path | None = None) -> Path:
    """``toolkit-failures-<YYYYmmdd-HHMMSS>.jsonl`` in ``cwd``, made unique if it exists."""
    folder = cwd or Path.cwd()
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    candidate = folder / f"toolkit-failures-{stamp}.jsonl"
    n = 1
    while candidate.exists():
        n += 1
        candidate = folder / f"toolkit-failures-{stamp}-{n}.jsonl"
    return candidate


def check_failures_path(path: Path) -> None:
    """Raise now, before any work, when failed items could not be written to ``path``.

    Raises:
        ValidationError: ``path`` is a folder, or its nearest existing folder is a file or not writable.

    Example:
        >>> check_failures_path(Path("out/failures.jsonl"))  # ``out`` is created at the first failure
    """
    hint = "pass a writable file path to --failures-file"
    if path.is_dir():
        raise ValidationError(f"failures file {path} is a folder", hint=hint)
    folder = path.absolute().parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise ValidationError(f"cannot create the failures file {path}: {folder} is not a folder", hint=hint)
    if not os.access(folder, os.W_OK | os.X_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise ValidationError(f"cannot write the failures file {path}: permission denied", hint=hint)


def failure_record(item: SourceItem, *, doc_id: str | None, stage: str, reason: str) -> dict[str, Any]:
    """One line of the failures file: enough to retry the item (``--retry-failures``).

    ``id`` is the document id when known; ``source_id`` the id the source gave (``None`` when the id
    comes from the content, so a retry derives it again from the possibly fixed file).
    """
    return {
        "id": doc_id if doc_id is not None else item.id,
        "source_id": item.id,
        "location": item.location,
        "stage": stage,
        "reason": reason,
        "position": item.position,
        "caption": item.caption,
        "label": item.label,
        "relation_id": item.relation_id,
        "metadata": dict(item.metadata),
    }


@dataclass
class Ledger:
    """Counts outcomes, writes failures as they happen (flushed per line), calls ``on_progress``.

    The failures file is created at the first failure only; ``failures_file`` stays ``None`` when
    nothing failed.
    """

    failures_path: Path
    on_progress: Callable[[IngestProgress], None] | None = None
    indexed: int = 0
    skipped: int = 0
    failed: int = 0
    skipped_reasons: Counter[str] = field(default_factory=Counter)
    skipped_examples: list[dict[str, str]] = field(default_factory=list)
    failed_reasons: Counter[str] = field(default_factory=Counter)
    failed_examples: list[dict[str, str]] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)
    failures_file: Path | None = None
    _fh: IO[str] | None = None

    @property
    def seen(self) -> int:
        return self.indexed + self.skipped + self.failed

    def progress(self) -> IngestProgress:
        return IngestProgress(self.seen, self.indexed, self.skipped, self.failed,
                              time.monotonic() - self.started)

    def _tick(self) -> None:
        if self.on_progress is not None:
            self.on_progress(self.progress())

    def record_indexed(self) -> None:
        self.indexed += 1
        self._tick()

    def record_skipped(self, reason: str, *, doc_id: str | None = None, position: str = "",
                       detail: str | None = None) -> None:
        self.skipped += 1
        self.skipped_reasons[reason] += 1
        if self.skipped_reasons[reason] <= MAX_EXAMPLES:
            self.skipped_examples.append({"id": doc_id or "", "position": position,
                                          "reason": detail or reason})
        self._tick()

    def record_failed(self, item: SourceItem, *, doc_id: str | None, stage: str, reason: str) -> None:
        self.failed += 1
        self.failed_reasons[stage] += 1
        self._write(failure_record(item, doc_id=doc_id, stage=stage, reason=reason))
        self._tick()

    def reclassify_indexed_as_failed(self, item: SourceItem, *, doc_id: str, stage: str, reason: str) -> None:
        """An item counted as indexed turned out to have failed (a pipeline error found afterwards)."""
        self.indexed -= 1
        self.failed += 1
        self.failed_reasons[stage] += 1
        self._write(failure_record(item, doc_id=doc_id, stage=stage, reason=reason))

    def _write(self, record: dict[str, Any]) -> None:
        if self.failed_reasons[record["stage"]] <= MAX_EXAMPLES:
            self.failed_examples.append({"location": str(record.get("location") or record.get("id") or ""),
                                         "stage": record["stage"], "reason": record["reason"]})
        if self._fh is None:
            try:
                self.failures_path.parent.mkdir(parents=True, exist_ok=True)
                self._fh = open(self.failures_path, "w", encoding="utf-8")  # noqa: SIM115 - closed in close()
            except OSError as exc:  # checked before the run (check_failures_path); this is a late surprise
                raise ValidationError(f"cannot write the failures file {self.failures_path}: "
                                      f"{exc.strerror or exc}",
                                      hint="pass a writable file path to --failures-file") from exc
            self.failures_file = self.failures_path
        self._fh.write(json.dumps(record, ensure_ascii=False) + "\n")
        # Flushed per line: a crash or Ctrl-C keeps every failure recorded so far.
        self._fh.flush()

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None
