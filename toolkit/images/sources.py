"""Where images come from: a folder, a CSV/TSV manifest, the Unsplash Lite folder, a list, a failures file.

Every source is an iterable of :class:`SourceItem` (one per input item, lazily, so memory stays flat)
with a ``kind`` and a ``position`` per item for messages. What counts as an item:

- ``directory``: every file under the folder (recursive, sorted, hidden names skipped) whose extension
  is an image extension (:data:`IMAGE_EXTENSIONS`). Other files are not items; they are counted in
  ``source.ignored_files`` and shown in the summary, so nothing disappears silently.
- ``manifest``: every data row of the CSV/TSV file (a row with no path and no URL is still an item; it
  fails with that reason).
- ``unsplash``: every row of ``photos.tsv*``; the caption is the photo's description (the
  photographer's, else the AI one) plus its user-suggested keywords from ``keywords.tsv*``.
- ``urls``: every non-blank line of a text file that is not a ``#`` comment (URLs or paths).
- ``failures``: every record of a failures file written by ``toolkit ingest`` (for
  ``--retry-failures``).

A problem with one item of a source never stops the others: an unreadable subfolder, a special file
(FIFO, device, socket) with an image extension, a manifest row that is not UTF-8, has the wrong number
of fields or a cell over :data:`MAX_CELL_CHARS`, each becomes one :class:`SourceItem` with ``error``
set (its ``position`` names the file and line, or the folder); ``toolkit ingest`` records it as failed
at stage ``source`` without reading anything. Only a source that cannot be read at all (a missing or
unreadable root, a header that is not text) raises ``ValidationError``.

Names shown to people (``position``, reasons) go through :func:`printable`, so a file name with ANSI
escape sequences, newlines or bytes that are not UTF-8 prints as visible escapes; ``location`` keeps the
real path for reading.

Example::

    source = open_source("reverse_image_search.csv")
    for item in source:
        print(item.id, item.location, item.label)
"""

from __future__ import annotations

import codecs
import csv
import io
import itertools
import json
import os
import re
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, BinaryIO, Literal
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from toolkit.errors import ValidationError

if TYPE_CHECKING:
    import _csv

#: Extensions of the files a folder walk takes as images. Formats Pillow reads only with a plugin
#: (HEIC/HEIF, JPEG XL) are items too: they fail with the plugin to install, never disappear.
IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".apng", ".webp", ".gif", ".bmp",
                              ".tif", ".tiff", ".avif", ".heic", ".heif", ".jxl", ".jp2", ".j2k"})
MANIFEST_EXTENSIONS = frozenset({".csv", ".tsv", ".tab", ".jsonl", ".ndjson"})
#: Manifests of one JSON object a line (keys as a CSV header's column names).
JSONL_EXTENSIONS = frozenset({".jsonl", ".ndjson"})
SOURCE_KINDS = ("auto", "directory", "manifest", "unsplash", "urls")
#: Width asked of Unsplash's image CDN: enough for CLIP's 224 px, far smaller than the originals.
UNSPLASH_WIDTH = 640
#: At most this many user keywords go into an Unsplash caption (CLIP reads 77 tokens anyway).
UNSPLASH_MAX_KEYWORDS = 20
# Unsplash columns kept as keyword metadata (the rest are stats, EXIF and AI landmark numbers).
UNSPLASH_METADATA = ("photo_url", "photographer_username", "photo_location_name", "photo_location_country",
                     "photo_location_city", "photo_width", "photo_height")
#: A manifest cell (caption, path, metadata value) longer than this fails its row (stage ``source``).
MAX_CELL_CHARS = 1 << 20
#: One physical line of a manifest, URL list or failures file: a longer line fails (memory stays flat
#: even for a file with no line breaks at all).
MAX_LINE_CHARS = 4 << 20
#: csv's own field limit while we read (Python's default, 128 KiB, made long captions a traceback).
#: Above MAX_CELL_CHARS so a long cell gets our message naming its column; it bounds the memory of a
#: quoted field that never closes.
CSV_FIELD_LIMIT = 16 << 20
#: The largest local file read as an image (a file growing past it while read fails too).
MAX_FILE_BYTES = 1 << 30

SourceKind = Literal["auto", "directory", "manifest", "unsplash", "urls"]


@dataclass(frozen=True)
class SourceItem:
    """One input item: where the image is, and what goes into its document besides the vector.

    ``id`` is the document id when the source has one (manifest id column, Unsplash photo id); when
    ``None`` the id is derived from the image content. ``position`` says where the item came from
    ("photos.csv:12", "cats/a.jpg") for messages and the failures file, always safe to print.
    ``error`` is set when the source itself could not give the item (a bad manifest row, an unreadable
    folder): the reason, with the fix; such an item fails at stage ``source`` and is never read.
    """

    location: str
    id: str | None = None
    caption: str | None = None
    label: str | None = None
    relation_id: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    position: str = ""
    error: str | None = None

    @property
    def is_url(self) -> bool:
        return is_url(self.location)


def is_url(location: str) -> bool:
    """True for ``http://`` and ``https://`` locations (everything else is a local path)."""
    return location.lower().startswith(("http://", "https://"))


# C0 and C1 controls (ESC starts ANSI sequences), DEL, bidi overrides that reorder what a terminal
# shows, line/paragraph separators, and lone surrogates (bytes of a file name that are not UTF-8).
_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape_char(match: re.Match[str]) -> str:
    char = match.group()
    code = ord(char)
    if char in _NAMED:
        return _NAMED[char]
    if 0xDC80 <= code <= 0xDCFF:  # os.fsdecode's stand-in for the byte code - 0xDC00
        return f"\\x{code - 0xDC00:02x}"
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: str) -> str:
    """``text`` safe to print on a terminal: control characters and undecodable bytes as escapes.

    A file name holding ``ESC[2J`` would clear the screen, a newline would fake a line of output, and
    a byte that is not UTF-8 (``\\udcff`` once decoded) makes ``print`` raise. Visible text is unchanged.

    Example:
        >>> printable("a\\x1b[31mred\\n.jpg")
        'a\\\\x1b[31mred\\\\n.jpg'
    """
    return _UNPRINTABLE.sub(_escape_char, text) if _UNPRINTABLE.search(text) else text


# --------------------------------------------------------------------------------------- local files

class LocalFileRefused(OSError):
    """A local path that is not read as an image: not a regular file, or over the size limit.

    An ``OSError`` so callers that turn OS errors into "cannot read file: ..." keep working; ``reason``
    (also ``str()``) says what the file is and what to do.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason

    def __str__(self) -> str:
        return self.reason


_FILE_KINDS = ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
               (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
               (stat.S_ISSOCK, "a socket"))


def file_kind(mode: int) -> str:
    """What ``st_mode`` is, in words ("a regular file", "a FIFO (named pipe)", "a character device")."""
    if stat.S_ISREG(mode):
        return "a regular file"
    return next((words for test, words in _FILE_KINDS if test(mode)), "a special file")


def _not_regular(mode: int) -> LocalFileRefused:
    return LocalFileRefused(f"not a regular file but {file_kind(mode)}: only regular files are read as "
                            "images")


def _too_large(size: int | None, max_bytes: int) -> LocalFileRefused:
    what = f"{size} bytes is" if size is not None else "it grew while being read,"
    return LocalFileRefused(f"file too large: {what} over the limit of {max_bytes} bytes for a local image "
                            "file")


class _CappedFile(io.FileIO):
    """A file whose reads stop with :class:`LocalFileRefused` past ``max_bytes`` (a file still growing)."""

    def __init__(self, fd: int, max_bytes: int | None) -> None:
        super().__init__(fd, "rb", closefd=True)
        self.max_bytes = max_bytes

    def _check(self) -> None:
        if self.max_bytes is not None and self.tell() > self.max_bytes:
            raise _too_large(None, self.max_bytes)

    def readinto(self, buffer: Any) -> int | None:
        try:
            count = super().readinto(buffer)
        except BlockingIOError:  # O_NONBLOCK on something that only looked like a file (/proc, /sys)
            raise LocalFileRefused("reading would block (not a plain file on disk)") from None
        self._check()
        return count

    def readall(self) -> bytes:
        chunks = []
        buffer = bytearray(1 << 20)
        while count := self.readinto(buffer):
            chunks.append(bytes(buffer[:count]))
        return b"".join(chunks)


def open_local_file(path: str | Path, *, max_bytes: int | None = MAX_FILE_BYTES) -> BinaryIO:
    """Open a local image file for reading, refusing anything but a regular file, without blocking.

    The path is checked with ``os.stat`` (following symlinks, so a link to ``/dev/zero`` is a
    character device) before it is opened, then opened with ``O_NONBLOCK`` (a FIFO swapped in between
    cannot hang the open) and checked again with ``fstat``. Reads past ``max_bytes`` fail, so a file
    that grows while it is read cannot take the memory or the time.

    Raises:
        LocalFileRefused: not a regular file (FIFO, device, socket, folder), or over ``max_bytes``.
        OSError: the usual ones (``FileNotFoundError``, ``PermissionError``, ...).

    Example:
        >>> with open_local_file("photos/a.jpg") as fh:
        ...     head = fh.read(16)
    """
    try:
        info = os.stat(path)
    except ValueError as exc:  # an embedded NUL byte in the path
        raise LocalFileRefused(f"invalid path ({exc})") from None
    if not stat.S_ISREG(info.st_mode):
        raise _not_regular(info.st_mode)
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_CLOEXEC", 0)
    fd = os.open(path, flags)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):  # replaced between the stat and the open
            raise _not_regular(info.st_mode)
        if max_bytes is not None and info.st_size > max_bytes:
            raise _too_large(info.st_size, max_bytes)
        raw = _CappedFile(fd, max_bytes)
    except BaseException:
        os.close(fd)
        raise
    return io.BufferedReader(raw)


class Source:
    """Base class: iterate to get :class:`SourceItem` s. ``ignored_files`` counts non-items seen."""

    kind: str = "source"

    def __init__(self, path: Path) -> None:
        self.path = path
        self.ignored_files = 0

    def __iter__(self) -> Iterator[SourceItem]:
        raise NotImplementedError

    def describe(self) -> str:
        return f"{self.kind} {printable(str(self.path))}"


# What os.fsdecode makes of a byte of a file name that is not UTF-8.
_FS_BYTE = re.compile("[\udc80-\udcff]")
_NOT_UTF8_NAME = ("the name is not valid UTF-8 (an old Latin-1 or Shift-JIS name?), so it cannot be "
                  "stored as text: rename it to UTF-8 (e.g. convmv -f latin1 -t utf-8 --notest NAME)")


def _folder_failure(folder: Path, position: str, exc: OSError) -> SourceItem:
    why = exc.strerror or str(exc)
    fix = ("fix its permissions (e.g. chmod u+rx)" if isinstance(exc, PermissionError)
           else "check the folder and the disk")
    return SourceItem(
        location=str(folder), position=position,
        error=f"cannot read folder {position}: {why}: nothing in it was read; {fix}, then run again "
              "with --resume (or --retry-failures with this failures file)")


class DirectorySource(Source):
    """Image files under a folder, recursively, in sorted order (deterministic across runs).

    A subfolder that cannot be listed, or an image name that is not a regular file (a FIFO, a device,
    a socket, a broken link), is one item with ``error`` set: the walk goes on. The walk keeps its own
    stack, so any nesting depth works, and visits each real folder once (symlink loops end).

    Example:
        >>> [item.location for item in DirectorySource(Path("photos"))][:1]
        ['photos/beach/1.jpg']
    """

    kind = "directory"

    def __init__(self, path: Path, *, prefix: str = "") -> None:
        super().__init__(path)
        self.prefix = prefix  # put before each position (a folder retried from a failures file)

    def _position(self, path: str) -> str:
        rel = os.path.relpath(path, self.path)
        return printable(os.path.join(self.prefix, rel) if self.prefix else rel)

    def _list(self, folder: str) -> list[os.DirEntry[str]]:
        with os.scandir(folder) as entries:
            return sorted(entries, key=lambda e: e.name)

    def __iter__(self) -> Iterator[SourceItem]:
        self.ignored_files = 0
        visited: set[tuple[int, int]] = set()
        try:
            info = os.stat(self.path)
            visited.add((info.st_dev, info.st_ino))
            root = self._list(str(self.path))
        except OSError as exc:
            raise ValidationError(f"cannot list folder {printable(str(self.path))}: {exc.strerror or exc}",
                                  hint="check the folder exists and is readable") from exc
        stack: list[Iterator[os.DirEntry[str]]] = [iter(root)]
        while stack:
            entry = next(stack[-1], None)
            if entry is None:
                stack.pop()
                continue
            if entry.name.startswith("."):
                continue  # .git, .DS_Store, editor swap files: never images users meant
            is_image = os.path.splitext(entry.name)[1].lower() in IMAGE_EXTENSIONS
            if _FS_BYTE.search(entry.name):
                # Its path cannot go into a document (or JSON) as text: it fails, shown escaped.
                if is_image or entry.is_dir():
                    position = self._position(entry.path)
                    yield SourceItem(location=printable(entry.path), position=position,
                                     error=_NOT_UTF8_NAME)
                else:
                    self.ignored_files += 1
                continue
            try:
                info = entry.stat()  # follows symlinks: what the name points at counts
            except OSError as exc:
                if is_image:
                    yield self._broken(entry, exc)
                else:
                    self.ignored_files += 1
                continue
            if stat.S_ISDIR(info.st_mode):
                key = (info.st_dev, info.st_ino)
                if key in visited:
                    continue  # a symlink back to a folder already walked (a loop would never end)
                visited.add(key)
                try:
                    children = self._list(entry.path)
                except OSError as exc:
                    yield _folder_failure(Path(entry.path), self._position(entry.path) + "/", exc)
                    continue
                stack.append(iter(children))
            elif not is_image:
                self.ignored_files += 1
            elif stat.S_ISREG(info.st_mode):
                yield SourceItem(location=entry.path, position=self._position(entry.path))
            else:
                position = self._position(entry.path)
                yield SourceItem(location=entry.path, position=position,
                                 error=str(_not_regular(info.st_mode)))

    def _broken(self, entry: os.DirEntry[str], exc: OSError) -> SourceItem:
        position = self._position(entry.path)
        if entry.is_symlink() and isinstance(exc, FileNotFoundError):
            try:
                target = printable(os.readlink(entry.path))
            except OSError:
                target = "?"
            why = f"a broken symbolic link (to {target}, which does not exist)"
        else:
            why = f"cannot read it: {exc.strerror or exc}"
        return SourceItem(location=entry.path, position=position, error=why)


@dataclass(frozen=True)
class ColumnMap:
    """Which manifest columns hold what. ``None`` means "the default name if the header has it".

    ``metadata`` ``None`` keeps every column not mapped to something else; a tuple keeps just those.
    """

    id: str | None = None
    path: str | None = None
    url: str | None = None
    caption: str | None = None
    label: str | None = None
    relation_id: str | None = None
    metadata: tuple[str, ...] | None = None


# Default column names, tried in order when no flag names the column (case-insensitive).
_DEFAULT_COLUMNS: dict[str, tuple[str, ...]] = {
    "id": ("id",),
    "path": ("path", "file", "filename", "image_path"),
    "url": ("url", "image_url"),
    "caption": ("caption", "description"),
    "label": ("label",),
    "relation_id": ("relation_id",),
}
_FLAGS = {"id": "--id-column", "path": "--path-column", "url": "--url-column", "caption": "--caption-column",
          "label": "--label-column", "relation_id": "--relation-column"}


def _sniff_delimiter(path: Path, sample: str) -> str:
    if path.suffix.lower() in (".tsv", ".tab"):
        return "\t"
    first = sample.splitlines()[0] if sample else ""
    try:
        return csv.Sniffer().sniff(sample, delimiters=",;\t|").delimiter
    except csv.Error:
        # One-column files or unusual content: the most frequent candidate in the header wins.
        counts = {d: first.count(d) for d in ",;\t|"}
        best = max(counts, key=lambda d: counts[d])
        return best if counts[best] else ","



# ------------------------------------------------------------------------------------- text files

def _mark_bad_bytes(exc: UnicodeError) -> tuple[str, int]:
    """Decode error handler: each undecodable byte becomes U+DC00 + byte (``surrogateescape`` also
    for bytes below 0x80, which UTF-16 can have), so the line goes on and the byte can be named."""
    if isinstance(exc, UnicodeDecodeError):
        return "".join(chr(0xDC00 + b) for b in exc.object[exc.start:exc.end]), exc.end
    raise exc


codecs.register_error("toolkit.mark", _mark_bad_bytes)
_BAD_BYTE = re.compile("[\udc00-\udcff]")
# UTF-32 first: its little-endian BOM starts with UTF-16's.
_BOMS = ((codecs.BOM_UTF32_LE, "utf-32-le"), (codecs.BOM_UTF32_BE, "utf-32-be"), (codecs.BOM_UTF8, "utf-8"),
         (codecs.BOM_UTF16_LE, "utf-16-le"), (codecs.BOM_UTF16_BE, "utf-16-be"))


class TextLines:
    """The physical lines of a text file, decoded one at a time: a bad line never stops the reading.

    The encoding is the BOM's (UTF-8, UTF-16, UTF-32; a UTF-8 BOM is dropped), else UTF-8. A line with
    bytes that are not valid in it, or longer than ``max_chars``, is noted in ``problems`` (line number
    -> reason) and still passed on (bad bytes as U+FFFD, an over-long line as an empty line), so a
    csv reader goes on with the next row. Line ends are kept, as csv wants them: ``\\n``, ``\\r\\n``,
    and ``\\r`` alone (old Mac exports) when the file has no ``\\n``. Memory stays under ``max_chars``
    whatever the file holds.

    Example:
        >>> lines = TextLines(open("m.csv", "rb"))
        >>> [line for line in lines], lines.problems
        (['id,path\\n', '1,caf\\ufffd.jpg\\n'], {2: 'byte 0xE9 at character 6 is not valid UTF-8'})
    """

    def __init__(self, fh: IO[bytes], *, max_chars: int | None = None, chunk: int = 1 << 16) -> None:
        self.fh, self.chunk = fh, chunk
        self.max_chars = MAX_LINE_CHARS if max_chars is None else max_chars
        self.number = 0
        self.encoding = "UTF-8"
        self.problems: dict[int, str] = {}

    def take(self, first: int, last: int) -> str | None:
        """The first problem on lines ``first..last`` ("line 7: ..."), forgetting those lines' problems."""
        found = None
        for number in range(first, last + 1):
            problem = self.problems.pop(number, None)
            if problem is not None and found is None:
                found = f"line {number}: {problem}"
        return found

    def _emit(self, line: str, too_long: bool) -> str:
        self.number += 1
        if too_long:
            self.problems[self.number] = f"longer than {self.max_chars} characters"
            return "\n"
        bad = _BAD_BYTE.search(line)
        if bad is not None:
            self.problems[self.number] = (f"byte 0x{ord(bad.group()) - 0xDC00:02X} at character "
                                          f"{bad.start() + 1} is not valid {self.encoding}")
            return _BAD_BYTE.sub("\ufffd", line)
        return line

    def __iter__(self) -> Iterator[str]:
        head = self.fh.read(self.chunk)
        encoding, skip = "utf-8", 0
        for bom, name in _BOMS:
            if head.startswith(bom):
                encoding, skip = name, len(bom)
                break
        else:
            # UTF-16 without a BOM: every other byte of ASCII text is NUL.
            pairs = head[:64]
            if len(pairs) >= 4 and pairs[1::2].count(0) == len(pairs) // 2 and 0 not in pairs[0::2]:
                encoding = "utf-16-le"
            elif len(pairs) >= 4 and pairs[0::2].count(0) == (len(pairs) + 1) // 2 and 0 not in pairs[1::2]:
                encoding = "utf-16-be"
        self.encoding = encoding.upper().replace("-LE", "").replace("-BE", "")
        decoder = codecs.getincrementaldecoder(encoding)("toolkit.mark")
        text = decoder.decode(head[skip:], final=not head)
        sep = "\r" if "\r" in text and "\n" not in text else "\n"
        pending, discarding = "", False
        while True:
            parts = (pending + text).split(sep)
            pending = parts.pop()
            for part in parts:
                line = part + sep
                yield self._emit(line, discarding or len(line) > self.max_chars)
                discarding = False
            if len(pending) > self.max_chars:
                pending, discarding = "", True  # drop it now; the line fails when it ends
            if not head:
                break
            head = self.fh.read(self.chunk)
            text = decoder.decode(head, final=not head)
        if pending or discarding:
            yield self._emit(pending, discarding)


def _open_binary(path: Path, what: str, *, hint: str) -> IO[bytes]:
    """Open a source file (manifest, list, failures file); an OS error is a ValidationError naming it."""
    try:
        return open(path, "rb")  # noqa: SIM115 - closed by the caller
    except OSError as exc:
        name = f"{what} {printable(str(path))}" if what else printable(str(path))
        raise ValidationError(f"cannot read {name}: {exc.strerror or exc}", hint=hint) from exc


def _not_text(path: Path, what: str, problem: str, encoding: str, *, hint: str) -> ValidationError:
    """The error for a source file whose first lines are not text (a binary file, a Latin-1 export)."""
    return ValidationError(f"{what} {printable(str(path))} is not {encoding} text ({problem})", hint=hint)


_MANIFEST_UTF8_HINT = "save the manifest as UTF-8 text (e.g. export as 'CSV UTF-8')"


def _columns(header: list[str]) -> str:
    shown = ", ".join(printable(name) for name in header[:50])
    return shown + (f", ... ({len(header)} in all)" if len(header) > 50 else "")


class ManifestSource(Source):
    """Rows of a CSV/TSV file with a header. ``id,path,label`` works with no column flags.

    Paths are resolved against the manifest's folder when relative. Columns not mapped to a field are
    kept as keyword metadata (or only those in ``columns.metadata``); empty values are dropped.

    Example:
        >>> item = next(iter(ManifestSource(Path("data/reverse_image_search.csv"))))
        >>> item.id, item.label
        ('0', 'goldfish')
    """

    kind = "manifest"

    def __init__(self, path: Path, columns: ColumnMap | None = None) -> None:
        super().__init__(path)
        self.columns = columns or ColumnMap()
        self.delimiter = ","

    def resolve(self, header: list[str]) -> dict[str, str | None]:
        """Map each field to its column name in ``header`` (ValidationError naming the flag)."""
        lower = {name.strip().lower(): name for name in header}
        out: dict[str, str | None] = {}
        for name, defaults in _DEFAULT_COLUMNS.items():
            given = getattr(self.columns, name)
            if given is not None:
                if given.strip().lower() not in lower:
                    raise ValidationError(
                        f"{printable(str(self.path))}: no column '{given}' (columns: {_columns(header)})",
                        hint=f"fix {_FLAGS[name]}")
                out[name] = lower[given.strip().lower()]
            else:
                out[name] = next((lower[d] for d in defaults if d in lower), None)
        if out["path"] is None and out["url"] is None:
            raise ValidationError(
                f"{printable(str(self.path))}: no path or URL column (columns: {_columns(header)})",
                hint="name the image column with --path-column or --url-column")
        if self.columns.metadata is not None:
            for name in self.columns.metadata:
                if name.strip().lower() not in lower:
                    raise ValidationError(
                        f"{printable(str(self.path))}: no column '{name}' (columns: {_columns(header)})",
                        hint="fix --metadata-columns")
        return out

    def _failed(self, line: int, why: str) -> SourceItem:
        position = f"{printable(self.path.name)}:{line}"
        return SourceItem(location="", position=position,
                          error=f"manifest {printable(self.path.name)} {why}; fix the row, then run the "
                                "manifest again with --resume")

    def __iter__(self) -> Iterator[SourceItem]:
        csv.field_size_limit(CSV_FIELD_LIMIT)
        with _open_binary(self.path, "manifest", hint="check the path") as fh:
            yield from self._rows(fh)

    def _rows(self, fh: IO[bytes]) -> Iterator[SourceItem]:
        lines = TextLines(fh)
        stream = iter(lines)
        sample = list(itertools.islice(stream, 64))  # the delimiter sniffer's sample (16 KiB of it)
        self.delimiter = _sniff_delimiter(self.path, "".join(sample)[:16384])
        reader = csv.reader(itertools.chain(sample, stream), delimiter=self.delimiter)
        try:
            header = next(reader, None)
        except csv.Error as exc:
            raise ValidationError(f"manifest {printable(str(self.path))}: cannot read the header row ({exc})",
                                  hint="the first row names the columns, e.g. id,path,label") from exc
        problem = lines.take(1, reader.line_num)
        if problem and "not valid" not in problem:
            raise ValidationError(f"manifest {printable(str(self.path))}: the header row is too long ({problem})",
                                  hint="the first row names the columns, e.g. id,path,label")
        if problem:
            raise _not_text(self.path, "manifest", problem, lines.encoding, hint=_MANIFEST_UTF8_HINT)
        if not header:
            raise ValidationError(f"{printable(str(self.path))}: empty manifest (no header row)",
                                  hint="the first row names the columns, e.g. id,path,label")
        header = [h.strip() for h in header]
        cols = self.resolve(header)
        mapped = {c for c in cols.values() if c is not None}
        if self.columns.metadata is not None:
            wanted = {m.strip().lower() for m in self.columns.metadata}
            meta_cols = [h for h in header if h.lower() in wanted]
        else:
            meta_cols = [h for h in header if h not in mapped and h]
        index = {h: i for i, h in enumerate(header)}
        base = self.path.parent
        for start, row, problem in _csv_rows(reader, lines):
            if isinstance(row, csv.Error):
                why = str(row)
                if "field limit" in why:
                    why = (f"has a field over {CSV_FIELD_LIMIT} characters (a quote that is never closed "
                           "makes the rest of the file one field)")
                yield self._failed(start, f"line {start}: {why}")
                continue
            if problem:
                hint = _MANIFEST_UTF8_HINT if "not valid" in problem else "split or shorten the line"
                yield self._failed(start, f"{problem} ({hint})")
                continue
            if not any(cell.strip() for cell in row):
                continue  # blank line
            extra = row[len(header):]
            if len(row) < len(header) or any(cell.strip() for cell in extra):
                yield self._failed(start, (
                    f"line {start}: has {len(row)} fields, the header has {len(header)} (a value holding "
                    f"the delimiter {self.delimiter!r} must be in double quotes)"))
                continue
            long = next((i for i, cell in enumerate(row) if len(cell) > MAX_CELL_CHARS), None)
            if long is not None:
                yield self._failed(start, (
                    f"line {start}: column '{printable(header[long])}' has {len(row[long])} characters, over "
                    f"the limit of {MAX_CELL_CHARS} for one cell"))
                continue
            if reader.line_num > start:
                broken = next((name for name in (cols["path"], cols["url"], cols["id"])
                               if name is not None and index[name] < len(row)
                               and ("\n" in row[index[name]] or "\r" in row[index[name]])), None)
                if broken is not None:
                    yield self._failed(start, (
                        f"line {start}: column '{printable(broken)}' holds a line break (a double quote "
                        f"opened on line {start} and closed only on line {reader.line_num}?)"))
                    continue
            position = f"{printable(self.path.name)}:{start}"

            def cell(name: str | None, row: list[str] = row) -> str | None:
                if name is None or index[name] >= len(row):
                    return None
                value = row[index[name]].strip()
                return value or None

            url = cell(cols["url"])
            local = cell(cols["path"])
            location = ""
            if local:
                location = _location(base, local)
            elif url:
                location = url
            metadata = {h: v for h in meta_cols if (v := cell(h)) is not None}
            yield SourceItem(location=location, id=cell(cols["id"]), caption=cell(cols["caption"]),
                             label=cell(cols["label"]), relation_id=cell(cols["relation_id"]),
                             metadata=metadata, position=position)



class JsonlManifestSource(ManifestSource):
    """A manifest of one JSON object a line: the keys are the columns (``{"id": ..., "path": ...}``).

    Column flags and defaults work as for CSV, matched against the keys of the first object. A line
    that is not a JSON object (or not UTF-8, or too long) fails alone, with its line number; a
    non-string value is kept as its JSON text.

    Example:
        >>> [i.id for i in JsonlManifestSource(Path("m.jsonl"))]
        ['1', '2']
    """

    def __iter__(self) -> Iterator[SourceItem]:
        with _open_binary(self.path, "manifest", hint="check the path") as fh:
            yield from self._records(TextLines(fh))

    def _keys(self, values: dict[str, str]) -> dict[str, str | None]:
        lower = {key.strip().lower(): key for key in values}
        out: dict[str, str | None] = {}
        for name, defaults in _DEFAULT_COLUMNS.items():
            given = getattr(self.columns, name)
            names = (given,) if given is not None else defaults
            out[name] = next((lower[n.strip().lower()] for n in names if n.strip().lower() in lower), None)
        return out

    def _records(self, lines: TextLines) -> Iterator[SourceItem]:
        cols: dict[str, str | None] | None = None
        base = self.path.parent
        for line in lines:
            number = lines.number
            problem = lines.take(number, number)
            if problem is None and not line.strip():
                continue
            record: Any = None
            if problem is None:
                try:
                    record = json.loads(line)
                except ValueError as exc:
                    problem = f"line {number}: not JSON ({exc})"
                else:
                    if not isinstance(record, dict):
                        problem = f"line {number}: not a JSON object"
            if problem is not None:
                if cols is None:  # the first record already: not a JSONL manifest at all
                    raise ValidationError(f"manifest {printable(str(self.path))}: {problem}",
                                          hint="a JSONL manifest has one JSON object a line, e.g. "
                                               '{"id": "1", "path": "a.jpg"}')
                yield self._failed(number, problem)
                continue
            values = {str(k): v if isinstance(v, str) else json.dumps(v) for k, v in record.items()
                      if v is not None}
            if cols is None:
                self.resolve(list(values))  # the first object checks the column flags (naming them)
            cols = self._keys(values)  # then each object maps its own keys (they may differ)
            long = next((k for k, v in values.items() if len(v) > MAX_CELL_CHARS), None)
            if long is not None:
                yield self._failed(number, f"line {number}: '{printable(long)}' has {len(values[long])} "
                                           f"characters, over the limit of {MAX_CELL_CHARS} for one value")
                continue

            def get(name: str | None, values: dict[str, str] = values) -> str | None:
                if name is None:
                    return None
                return values.get(name, "").strip() or None

            local, url = get(cols["path"]), get(cols["url"])
            location = _location(base, local) if local else (url or "")
            mapped = {c for c in cols.values() if c is not None}
            wanted = {m.strip().lower() for m in self.columns.metadata} if self.columns.metadata is not None else None
            metadata = {k: v.strip() for k, v in values.items() if k not in mapped and v.strip()
                        and (wanted is None or k.lower() in wanted)}
            yield SourceItem(location=location, id=get(cols["id"]), caption=get(cols["caption"]),
                             label=get(cols["label"]), relation_id=get(cols["relation_id"]),
                             metadata=metadata, position=f"{printable(self.path.name)}:{number}")


def _resolve(base: Path, value: str) -> Path:
    path = Path(value).expanduser()
    return path if path.is_absolute() else base / path


# Any "scheme://": such a value is a URL, never a path (Path() would fold "s3://b/x" into "s3:/b/x").
_SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")


def _location(base: Path, value: str) -> str:
    """A path or URL as given in a list or manifest: URLs (any scheme) kept, paths resolved against ``base``."""
    return value if _SCHEME.match(value) else str(_resolve(base, value))


class UrlListSource(Source):
    """One URL or path a line; blank lines and ``#`` comments skipped; paths relative to the file.

    Example:
        >>> [i.location for i in UrlListSource(Path("urls.txt"))]
        ['https://example.com/a.jpg', '/data/b.png']
    """

    kind = "urls"

    def __iter__(self) -> Iterator[SourceItem]:
        # Often an image whose extension is not one we read: auto-detection took it for a list of URLs.
        hint = ("a URL list is UTF-8 text, one URL or path a line; images need one of the extensions "
                f"{', '.join(sorted(IMAGE_EXTENSIONS))} (or fix --kind)")
        name = printable(self.path.name)
        with _open_binary(self.path, "", hint="check the path") as fh:
            lines = TextLines(fh)
            listed = False
            for line in lines:
                number = lines.number
                problem = lines.take(number, number)
                if problem is not None:
                    if not listed:  # the first line already: not a list at all
                        raise _not_text(self.path, "URL list", problem, lines.encoding, hint=hint)
                    yield SourceItem(location="", position=f"{name}:{number}",
                                     error=f"URL list {name} {problem}: save the list as UTF-8 text")
                    continue
                value = line.strip()
                if not value or value.startswith("#"):
                    continue
                listed = True
                location = _location(self.path.parent, value)
                yield SourceItem(location=location, position=f"{name}:{number}")


def unsplash_image_url(photo_image_url: str, width: int = UNSPLASH_WIDTH) -> str:
    """The photo's CDN URL resized to ``width`` (Unsplash's dynamic images): never the original.

    Example:
        >>> unsplash_image_url("https://images.unsplash.com/photo-1")
        'https://images.unsplash.com/photo-1?w=640'
    """
    parts = urlsplit(photo_image_url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "w"]
    query.append(("w", str(width)))
    return urlunsplit(parts._replace(query=urlencode(query)))


def _csv_rows(reader: _csv.Reader, lines: TextLines) -> Iterator[tuple[int, list[str] | csv.Error, str | None]]:
    """``(start, row, problem)`` for each row of ``reader`` (which reads ``lines``): the line the row starts
    on, the row (or the ``csv.Error`` that stopped it, its lines skipped) and the first problem
    :meth:`TextLines.take` found on its lines. ``reader.line_num`` is still the row's last line while the
    caller looks at it."""
    while True:
        start = reader.line_num + 1
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            lines.take(start, reader.line_num)
            yield start, exc, None
            continue
        yield start, row, lines.take(start, reader.line_num)


def _numbered(folder: Path, stem: str) -> list[Path]:
    # photos.tsv, photos.tsv000, photos.tsv001 ... (the Full dataset is split), in order.
    pattern = re.compile(rf"^{re.escape(stem)}\.(tsv|csv)\d*$", re.IGNORECASE)
    return sorted(p for p in folder.iterdir() if p.is_file() and pattern.match(p.name))


def _tsv_rows(files: list[Path]) -> Iterator[tuple[str, dict[str, str] | None, str | None]]:
    """``(position, row, problem)`` of split TSV files; later parts reuse the first header when they
    lack one. A row that cannot be read has ``row`` None and ``problem`` saying why."""
    header: list[str] | None = None
    csv.field_size_limit(CSV_FIELD_LIMIT)
    hint = "use the dataset's own TSV files, unzipped as downloaded"
    for file in files:
        with _open_binary(file, "Unsplash file", hint=hint) as fh:
            lines = TextLines(fh)
            reader = csv.reader(lines, delimiter="\t")
            for start, row, problem in _csv_rows(reader, lines):
                if isinstance(row, csv.Error):
                    yield f"{printable(file.name)}:{start}", None, f"line {start}: {row}"
                    continue
                if header is None or (start == 1 and "photo_id" in row):
                    if problem:
                        raise _not_text(file, "Unsplash file", problem, lines.encoding, hint=hint)
                    header = [h.strip() for h in row]
                    continue
                position = f"{printable(file.name)}:{start}"
                if problem:
                    yield position, None, problem
                elif any(row):
                    yield position, dict(zip(header, row, strict=False)), None


def is_unsplash_folder(folder: Path) -> bool:
    """A folder holding ``photos.tsv*`` (the Unsplash Lite/Full layout)."""
    return folder.is_dir() and bool(_numbered(folder, "photos"))


class UnsplashSource(Source):
    """The Unsplash dataset folder: ``photos.tsv*`` rows, captions with user-suggested keywords.

    The caption is ``photo_description`` (else ``ai_description``) followed by the keywords users
    suggested for the photo (``keywords.tsv*`` rows with ``suggested_by_user`` true), e.g.
    ``"a red fox in the snow; fox, winter, animal"``. The image is a local file named after the photo
    id when present (``<folder>/<id>.jpg`` or ``<folder>/photos/<id>.jpg``), else ``photo_image_url``
    at :data:`UNSPLASH_WIDTH` px wide. The user keywords are read once into memory (a few MB for Lite).

    Example:
        >>> item = next(iter(UnsplashSource(Path("unsplash-research-dataset-lite-latest"))))
        >>> item.id, item.location
        ('XMyPniM9LF0', 'https://images.unsplash.com/photo-1414609245224-afa02bfb3fda?w=640')
    """

    kind = "unsplash"

    def __init__(self, path: Path, *, width: int = UNSPLASH_WIDTH) -> None:
        super().__init__(path)
        self.width = width

    def keywords(self) -> dict[str, list[str]]:
        """photo_id -> user-suggested keywords, in file order, without repeats."""
        found: dict[str, list[str]] = {}
        for _, row, _problem in _tsv_rows(_numbered(self.path, "keywords")):
            if row is None:
                continue  # a keyword lost, never an item: the photo is still ingested
            if (row.get("suggested_by_user") or "").strip().lower() not in ("t", "true", "1", "yes"):
                continue
            photo, keyword = (row.get("photo_id") or "").strip(), (row.get("keyword") or "").strip()
            if photo and keyword:
                words = found.setdefault(photo, [])
                if keyword not in words and len(words) < UNSPLASH_MAX_KEYWORDS:
                    words.append(keyword)
        return found

    def _local_file(self, photo_id: str) -> Path | None:
        for folder in (self.path, self.path / "photos", self.path / "images"):
            for ext in (".jpg", ".jpeg", ".png", ".webp"):
                candidate = folder / f"{photo_id}{ext}"
                if candidate.is_file():
                    return candidate
        return None

    def __iter__(self) -> Iterator[SourceItem]:
        photos = _numbered(self.path, "photos")
        if not photos:
            raise ValidationError(f"{self.path}: no photos.tsv* file",
                                  hint="point at the unzipped Unsplash folder")
        keywords = self.keywords()
        for position, row, problem in _tsv_rows(photos):
            if row is None:
                yield SourceItem(location="", position=position,
                                 error=f"Unsplash file {position.split(':')[0]} {problem}")
                continue
            photo_id = (row.get("photo_id") or "").strip()
            description = ((row.get("photo_description") or "").strip()
                           or (row.get("ai_description") or "").strip())
            words = keywords.get(photo_id, [])
            caption = "; ".join(part for part in (description, ", ".join(words)) if part) or None
            local = self._local_file(photo_id) if photo_id else None
            image_url = (row.get("photo_image_url") or "").strip()
            location = ""
            if local:
                location = str(local)
            elif image_url:
                location = unsplash_image_url(image_url, self.width)
            metadata = {k: v.strip() for k in UNSPLASH_METADATA if (v := row.get(k) or "").strip()}
            yield SourceItem(location=location, id=photo_id or None, caption=caption, metadata=metadata,
                             position=position)


class FailuresSource(Source):
    """The records of a failures file (JSONL) written by ``toolkit ingest``, as items to retry.

    Example:
        >>> [i.location for i in FailuresSource(Path("toolkit-failures-20250101-120000.jsonl"))]
        ['photos/broken.jpg']
    """

    kind = "failures"

    def __iter__(self) -> Iterator[SourceItem]:
        hint = "pass a file written by toolkit ingest to --retry-failures"
        with _open_binary(self.path, "failures file", hint=hint) as fh:
            yield from self._records(TextLines(fh), hint)

    def _records(self, lines: TextLines, hint: str) -> Iterator[SourceItem]:
        name = printable(self.path.name)
        read_one = False
        for line in lines:
            number = lines.number
            problem = lines.take(number, number)
            if not line.strip() and problem is None:
                continue
            try:
                if problem is not None:
                    raise ValueError(problem)
                record = json.loads(line)
                if not isinstance(record, dict):
                    raise ValueError("not an object")
            except ValueError as exc:
                if not read_one:  # the first record already: not a failures file
                    if problem is not None and "not valid" in problem:
                        raise _not_text(self.path, "failures file", problem, lines.encoding,
                                        hint=hint) from exc
                    raise ValidationError(f"{printable(str(self.path))}:{number}: not a failures record ({exc})",
                                          hint=hint) from exc
                yield SourceItem(location="", position=f"{name}:{number}",
                                 error=f"failures file {name} line {number}: not a failures record ({exc})")
                continue
            read_one = True
            yield from self._items(record, f"{name}:{number}")

    def _items(self, record: dict[str, Any], where: str) -> Iterator[SourceItem]:
        location = str(record.get("location") or "")
        position = printable(str(record.get("position") or where))
        if record.get("stage") == "source":
            # The source could not give these: a folder that could not be listed is walked again (its
            # permissions fixed since), a file that is a regular file now is read; anything else (a
            # manifest row, fixed in the manifest; a FIFO, a bad name) fails again with its reason.
            target = Path(location)
            if location and not target.is_absolute():
                target = self.path.absolute().parent / target
            if location and target.is_dir():
                yield from DirectorySource(target, prefix=position.rstrip("/"))
                return
            if not location or not target.is_file():
                yield SourceItem(location=location, position=position,
                                 error=str(record.get("reason") or "the source could not read this item"))
                return
        metadata = record.get("metadata") or {}
        yield SourceItem(
            location=location,
            # source_id (absent in hand-written files): None means "derive from the content".
            id=_opt_str(record["source_id"] if "source_id" in record else record.get("id")),
            caption=_opt_str(record.get("caption")),
            label=_opt_str(record.get("label")),
            relation_id=_opt_str(record.get("relation_id")),
            metadata=string_dict(metadata),
            position=position,
        )


def string_dict(value: object) -> dict[str, str]:
    """A JSON object as ``dict[str, str]`` (anything else: empty)."""
    return {str(k): str(v) for k, v in value.items()} if isinstance(value, dict) else {}


def _opt_str(value: object) -> str | None:
    return None if value is None or value == "" else str(value)


class SingleSource(Source):
    """One image given directly (a path or a URL)."""

    kind = "single"

    def __init__(self, location: str) -> None:
        super().__init__(Path(location))
        self.location = location

    def __iter__(self) -> Iterator[SourceItem]:
        yield SourceItem(location=self.location, position=self.location)

    def describe(self) -> str:
        return self.location


# First bytes of the image formats people have without an extension (camera dumps, downloads).
_IMAGE_MAGIC = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"GIF87a", b"GIF89a", b"II*\x00", b"MM\x00*")


def _looks_like_image(path: Path) -> bool:
    """A file whose first bytes are an image's (so it is one item, not a list of URLs)."""
    try:
        with open_local_file(path, max_bytes=None) as fh:
            head = fh.read(16)
    except OSError:
        return False
    return head.startswith(_IMAGE_MAGIC) or (head[:4] == b"RIFF" and head[8:12] == b"WEBP") or (
        head[4:8] == b"ftyp" and head[8:12] in (b"avif", b"heic", b"heix", b"mif1"))


def open_source(spec: str | Path, *, kind: SourceKind = "auto", columns: ColumnMap | None = None) -> Source:
    """The source for a path (or URL), its kind detected unless ``kind`` says it.

    Detection: a folder with ``photos.tsv*`` is ``unsplash``, any other folder ``directory``; a file
    ending in .csv/.tsv/.tab is a ``manifest``; an image file or an http(s) URL is one item; any other
    file is a ``urls`` list.

    Raises:
        ValidationError: the path does not exist, or does not fit the kind asked for.

    Example:
        >>> open_source("photos/").kind
        'directory'
    """
    text = str(spec)
    if _FS_BYTE.search(text):
        raise ValidationError(f"source {printable(text)}: {_NOT_UTF8_NAME}", hint="rename it, then run again")
    if kind == "auto" and is_url(text):
        return SingleSource(text)
    path = Path(text).expanduser()
    if not path.exists():
        raise ValidationError(f"source {path} does not exist", hint="pass an existing folder or file")
    if kind == "auto":
        if path.is_dir():
            kind = "unsplash" if is_unsplash_folder(path) else "directory"
        elif path.suffix.lower() in MANIFEST_EXTENSIONS:
            kind = "manifest"
        elif path.suffix.lower() in IMAGE_EXTENSIONS or _looks_like_image(path):
            return SingleSource(str(path))
        else:
            kind = "urls"
    if kind in ("directory", "unsplash") and not path.is_dir():
        raise ValidationError(f"--kind {kind} needs a folder, {path} is a file",
                              hint="fix --kind or the path")
    if kind in ("manifest", "urls") and path.is_dir():
        raise ValidationError(f"--kind {kind} needs a file, {path} is a folder",
                              hint="fix --kind or the path")
    if kind == "directory":
        return DirectorySource(path)
    if kind == "unsplash":
        return UnsplashSource(path)
    if kind == "manifest":
        if path.suffix.lower() in JSONL_EXTENSIONS:
            return JsonlManifestSource(path, columns)
        return ManifestSource(path, columns)
    if kind == "urls":
        return UrlListSource(path)
    raise ValidationError(f"unknown source kind {kind!r}", hint=f"use --kind {' | '.join(SOURCE_KINDS)}")
