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

Example::

    source = open_source("reverse_image_search.csv")
    for item in source:
        print(item.id, item.location, item.label)
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Literal
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from toolkit.errors import ValidationError

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff"})
MANIFEST_EXTENSIONS = frozenset({".csv", ".tsv", ".tab"})
SOURCE_KINDS = ("auto", "directory", "manifest", "unsplash", "urls")
#: Width asked of Unsplash's image CDN: enough for CLIP's 224 px, far smaller than the originals.
UNSPLASH_WIDTH = 640
#: At most this many user keywords go into an Unsplash caption (CLIP reads 77 tokens anyway).
UNSPLASH_MAX_KEYWORDS = 20
# Unsplash columns kept as keyword metadata (the rest are stats, EXIF and AI landmark numbers).
UNSPLASH_METADATA = ("photo_url", "photographer_username", "photo_location_name", "photo_location_country",
                     "photo_location_city", "photo_width", "photo_height")

SourceKind = Literal["auto", "directory", "manifest", "unsplash", "urls"]


@dataclass(frozen=True)
class SourceItem:
    """One input item: where the image is, and what goes into its document besides the vector.

    ``id`` is the document id when the source has one (manifest id column, Unsplash photo id); when
    ``None`` the id is derived from the image content. ``position`` says where the item came from
    ("photos.csv:12", "cats/a.jpg") for messages and the failures file.
    """

    location: str
    id: str | None = None
    caption: str | None = None
    label: str | None = None
    relation_id: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    position: str = ""

    @property
    def is_url(self) -> bool:
        return is_url(self.location)


def is_url(location: str) -> bool:
    """True for ``http://`` and ``https://`` locations (everything else is a local path)."""
    return location.lower().startswith(("http://", "https://"))


class Source:
    """Base class: iterate to get :class:`SourceItem` s. ``ignored_files`` counts non-items seen."""

    kind: str = "source"

    def __init__(self, path: Path) -> None:
        self.path = path
        self.ignored_files = 0

    def __iter__(self) -> Iterator[SourceItem]:
        raise NotImplementedError

    def describe(self) -> str:
        return f"{self.kind} {self.path}"


class DirectorySource(Source):
    """Image files under a folder, recursively, in sorted order (deterministic across runs).

    Example:
        >>> [item.location for item in DirectorySource(Path("photos"))][:1]
        ['photos/beach/1.jpg']
    """

    kind = "directory"

    def __iter__(self) -> Iterator[SourceItem]:
        self.ignored_files = 0
        self._visited: set[Path] = set()
        yield from self._walk(self.path)

    def _walk(self, folder: Path) -> Iterator[SourceItem]:
        real = folder.resolve()
        if real in self._visited:
            return  # a symlink back to a folder already walked (a loop would never end)
        self._visited.add(real)
        try:
            entries = sorted(folder.iterdir(), key=lambda p: p.name)
        except OSError as exc:
            raise ValidationError(f"cannot list folder {folder}: {exc.strerror or exc}",
                                  hint="check the folder exists and is readable") from exc
        for entry in entries:
            if entry.name.startswith("."):
                continue  # .git, .DS_Store, editor swap files: never images users meant
            if entry.is_dir():
                yield from self._walk(entry)
            elif entry.suffix.lower() in IMAGE_EXTENSIONS:
                yield SourceItem(location=str(entry), position=str(entry.relative_to(self.path)))
            else:
                self.ignored_files += 1


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

    def _open(self) -> io.TextIOWrapper:
        return _open_text(self.path, "manifest", hint="check the path", encoding="utf-8-sig", newline="")

    def resolve(self, header: list[str]) -> dict[str, str | None]:
        """Map each field to its column name in ``header`` (ValidationError naming the flag)."""
        lower = {name.strip().lower(): name for name in header}
        out: dict[str, str | None] = {}
        for name, defaults in _DEFAULT_COLUMNS.items():
            given = getattr(self.columns, name)
            if given is not None:
                if given.strip().lower() not in lower:
                    raise ValidationError(
                        f"{self.path}: no column '{given}' (columns: {', '.join(header)})",
                        hint=f"fix {_FLAGS[name]}")
                out[name] = lower[given.strip().lower()]
            else:
                out[name] = next((lower[d] for d in defaults if d in lower), None)
        if out["path"] is None and out["url"] is None:
            raise ValidationError(
                f"{self.path}: no path or URL column (columns: {', '.join(header)})",
                hint="name the image column with --path-column or --url-column")
        if self.columns.metadata is not None:
            for name in self.columns.metadata:
                if name.strip().lower() not in lower:
                    raise ValidationError(f"{self.path}: no column '{name}' (columns: {', '.join(header)})",
                                          hint="fix --metadata-columns")
        return out

    def __iter__(self) -> Iterator[SourceItem]:
        try:
            yield from self._rows()
        except UnicodeDecodeError as exc:
            raise _not_utf8(self.path, "manifest", exc,
                            hint="save the manifest as UTF-8 text (e.g. export as 'CSV UTF-8')") from exc

    def _rows(self) -> Iterator[SourceItem]:
        with self._open() as fh:
            sample = fh.read(16384)
            fh.seek(0)
            self.delimiter = _sniff_delimiter(self.path, sample)
            reader = csv.reader(fh, delimiter=self.delimiter)
            header = next(reader, None)
            if not header:
                raise ValidationError(f"{self.path}: empty manifest (no header row)",
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
            for row in reader:
                if not any(cell.strip() for cell in row):
                    continue  # blank line
                position = f"{self.path.name}:{reader.line_num}"

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


def _open_text(path: Path, what: str, *, hint: str, encoding: str = "utf-8",
               newline: str | None = None) -> io.TextIOWrapper:
    """Open a source file for reading; an OS error becomes a ValidationError naming the file."""
    try:
        return open(path, encoding=encoding, newline=newline)  # noqa: SIM115 - closed by the caller
    except OSError as exc:
        name = f"{what} {path}" if what else str(path)
        raise ValidationError(f"cannot read {name}: {exc.strerror or exc}", hint=hint) from exc


def _not_utf8(path: Path, what: str, exc: UnicodeDecodeError, *, hint: str) -> ValidationError:
    """The error for a source file that is not UTF-8 text (a binary file, a Latin-1 export)."""
    return ValidationError(f"{what} {path} is not UTF-8 text ({exc.reason})", hint=hint)


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
        fh = _open_text(self.path, "", hint="check the path", encoding="utf-8-sig")
        with fh:
            try:
                for number, line in enumerate(fh, start=1):
                    value = line.strip()
                    if not value or value.startswith("#"):
                        continue
                    location = _location(self.path.parent, value)
                    yield SourceItem(location=location, position=f"{self.path.name}:{number}")
            except UnicodeDecodeError as exc:
                # Often an image whose extension is not one we read (.heic, .avif): auto-detection took it
                # for a list of URLs.
                raise _not_utf8(self.path, "URL list", exc, hint=(
                    "a URL list is UTF-8 text, one URL or path a line; images need one of the extensions "
                    f"{', '.join(sorted(IMAGE_EXTENSIONS))} (or fix --kind)")) from exc


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


def _numbered(folder: Path, stem: str) -> list[Path]:
    # photos.tsv, photos.tsv000, photos.tsv001 ... (the Full dataset is split), in order.
    pattern = re.compile(rf"^{re.escape(stem)}\.(tsv|csv)\d*$", re.IGNORECASE)
    return sorted(p for p in folder.iterdir() if p.is_file() and pattern.match(p.name))


def _tsv_rows(files: list[Path]) -> Iterator[tuple[str, dict[str, str]]]:
    """Rows of split TSV files as dicts; later parts reuse the first header when they lack one."""
    header: list[str] | None = None
    csv.field_size_limit(1 << 24)
    for file in files:
        with open(file, encoding="utf-8", newline="") as fh:
            reader = csv.reader(fh, delimiter="\t")
            try:
                for row in reader:
                    if header is None or (reader.line_num == 1 and "photo_id" in row):
                        header = [h.strip() for h in row]
                        continue
                    if not any(row):
                        continue
                    yield f"{file.name}:{reader.line_num}", dict(zip(header, row, strict=False))
            except UnicodeDecodeError as exc:
                raise _not_utf8(file, "Unsplash file", exc,
                                hint="use the dataset's own TSV files, unzipped as downloaded") from exc


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
        for _, row in _tsv_rows(_numbered(self.path, "keywords")):
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
        for position, row in _tsv_rows(photos):
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
        fh = _open_text(self.path, "failures file",
                        hint="pass a file written by toolkit ingest to --retry-failures")
        with fh:
            try:
                yield from self._records(fh)
            except UnicodeDecodeError as exc:
                raise _not_utf8(self.path, "failures file", exc,
                                hint="pass a file written by toolkit ingest to --retry-failures") from exc

    def _records(self, fh: IO[str]) -> Iterator[SourceItem]:
        for number, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                if not isinstance(record, dict):
                    raise ValueError("not an object")
            except ValueError as exc:
                raise ValidationError(
                    f"{self.path}:{number}: not a failures record ({exc})",
                    hint="pass a file written by toolkit ingest to --retry-failures") from exc
            metadata = record.get("metadata") or {}
            yield SourceItem(
                location=str(record.get("location") or ""),
                # source_id (absent in hand-written files): None means "derive from the content".
                id=_opt_str(record["source_id"] if "source_id" in record else record.get("id")),
                caption=_opt_str(record.get("caption")),
                label=_opt_str(record.get("label")),
                relation_id=_opt_str(record.get("relation_id")),
                metadata=string_dict(metadata),
                position=str(record.get("position") or f"{self.path.name}:{number}"),
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
        elif path.suffix.lower() in IMAGE_EXTENSIONS:
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
        return ManifestSource(path, columns)
    if kind == "urls":
        return UrlListSource(path)
    raise ValidationError(f"unknown source kind {kind!r}", hint=f"use --kind {' | '.join(SOURCE_KINDS)}")
