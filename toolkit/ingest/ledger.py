"""Every item's outcome: counts, the progress callback, and the failures file (JSONL).

The ledger is the one place outcomes are recorded, so the summary always adds up:
``seen == indexed + skipped + failed``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import secrets
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from toolkit.errors import ValidationError
from toolkit.images.sources import FailuresSource, SourceItem, is_url
from toolkit.ingest.fetch import display_url

#: Failure stages, in pipeline order (the ``stage`` of a failures record). ``not sent``: read from the
#: source but not finished when the run stopped (never sent to the cluster; retried like any other).
STAGES = ("source", "read", "download", "decode", "index", "pipeline", "not sent")
STAGE_NOT_SENT = "not sent"
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
    """``toolkit-failures-<YYYYmmdd-HHMMSS>-<pid>-<random>.jsonl`` in ``cwd``.

    The pid and random suffix keep runs started in the same second apart; the ledger also creates it
    exclusively (``O_EXCL``) and picks another name if it exists anyway, so no run writes into another's.
    """
    folder = cwd or Path.cwd()
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    return folder / f"toolkit-failures-{stamp}-{os.getpid()}-{secrets.token_hex(3)}.jsonl"


def stored_location(location: str) -> str:
    """How a location goes into the failures file (and the index): local paths absolute, so that
    ``--retry-failures`` finds them from any folder; a password in a URL masked."""
    if not location:
        return location
    if is_url(location) or "://" in location:
        return display_url(location)
    return os.path.abspath(location)


def shown_location(location: str) -> str:
    """A location as shown to the user: relative to the working directory when it is under it."""
    if "://" in location:
        return display_url(location)
    if os.path.isabs(location):
        try:
            relative = os.path.relpath(location)
        except ValueError:
            return location
        if not relative.startswith(".."):
            return relative
    return location


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
        "location": stored_location(item.location),
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
    nothing failed. With ``exclusive`` (the default name) it is created with ``O_EXCL``, and under a
    new name if another run took this one. When it cannot be written (a full disk), the run goes on:
    ``write_error`` says why and ``unsaved`` keeps the records that are in no file.
    """

    failures_path: Path
    on_progress: Callable[[IngestProgress], None] | None = None
    exclusive: bool = False
    indexed: int = 0
    skipped: int = 0
    failed: int = 0
    skipped_reasons: Counter[str] = field(default_factory=Counter)
    skipped_examples: list[dict[str, str]] = field(default_factory=list)
    failed_reasons: Counter[str] = field(default_factory=Counter)
    failed_examples: list[dict[str, str]] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)
    failures_file: Path | None = None
    write_error: str | None = None
    unsaved: list[dict[str, Any]] = field(default_factory=list)
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
            self.failed_examples.append({"location": shown_location(str(record.get("location") or "")) or
                                         str(record.get("id") or ""),
                                         "stage": record["stage"], "reason": record["reason"]})
        if self.write_error is not None:
            self.unsaved.append(record)
            return
        line = json.dumps(record, ensure_ascii=False) + "\n"
        try:
            if self._fh is None:
                self._fh = self._open()
                self.failures_file = self.failures_path
            self._fh.write(line)
            # Flushed per line: a crash or Ctrl-C keeps every failure recorded so far.
            self._fh.flush()
        except OSError as exc:  # checked before the run (check_failures_path); a full disk is a late surprise
            self.write_error = f"cannot write the failures file {self.failures_path}: {exc.strerror or exc}"
            self.unsaved.append(record)
            self._drop_file()

    def _open(self) -> IO[str]:
        self.failures_path.parent.mkdir(parents=True, exist_ok=True)
        if not self.exclusive:
            return open(self.failures_path, "w", encoding="utf-8")  # noqa: SIM115 - closed in close()
        for _ in range(100):
            try:
                return open(self.failures_path, "x", encoding="utf-8")  # noqa: SIM115 - O_EXCL
            except FileExistsError:  # another run started in the same second took the name
                self.failures_path = default_failures_path(self.failures_path.parent)
        raise FileExistsError(f"no free failures file name in {self.failures_path.parent}")

    def _drop_file(self) -> None:
        fh, self._fh = self._fh, None
        if fh is not None:
            try:
                fh.close()
            except OSError:
                pass  # the buffered line fails again: it is in ``unsaved`` already

    def close(self) -> None:
        if self._fh is not None:
            try:
                self._fh.close()
            except OSError as exc:
                self.write_error = f"cannot write the failures file {self.failures_path}: {exc.strerror or exc}"
            self._fh = None


class RetrySource(FailuresSource):
    """The items of a failures file to retry (``--retry-failures``), local paths made absolute.

    Files written since locations are stored absolute need nothing; in older files a relative path is
    resolved against the failures file's folder (where the run that wrote it usually ran), not the
    working directory of the retry. ``relative_resolved`` counts those, so the caller can say so.

    Example:
        >>> items = RetrySource(Path("runs/toolkit-failures-20250101-120000.jsonl"))
        >>> [i.location for i in items], items.relative_resolved
        (['/home/me/runs/photos/broken.jpg'], 1)
    """

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.relative_resolved = 0

    def __iter__(self) -> Iterator[SourceItem]:
        folder = self.path.absolute().parent
        self.relative_resolved = 0
        for item in super().__iter__():
            location = item.location
            if location and "://" not in location and not os.path.isabs(location):
                self.relative_resolved += 1
                item = dataclasses.replace(item, location=str(folder / location))
            yield item
