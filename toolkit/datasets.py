"""Sample data: the bundled photos, and the public datasets the image-search articles use.

- The bundled photos (``toolkit/data/``): seven public-domain / CC0 photos from scikit-image's sample
  data with English captions (``photos.csv``: ``id,path,caption,label``; sources and licenses in
  ``LICENSES.md``). ``toolkit smoke`` and ``toolkit quickstart`` index them.
- ``towhee``: towhee's ``reverse_image_search.zip`` (an ImageNet subset: ``reverse_image_search.csv``
  with ``id,path,label`` rows pointing at ``train/<class>/<file>.JPEG``, plus ``test/`` query images).
- ``unsplash-lite``: the Unsplash Lite research dataset (``photos.tsv000``, ``keywords.tsv000``, ...;
  the images themselves are fetched from Unsplash's CDN at ingest time).

Downloads go to ``--data-dir``; an archive or folder already there is reused, so a second run needs no
network.

Example::

    folder = fetch_dataset("towhee", Path("data"), progress=lambda done, total: None)
    source = dataset_source("towhee", folder)
"""

from __future__ import annotations

import shutil
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from toolkit.errors import ToolkitError, ValidationError
from toolkit.images.sources import ManifestSource, Source, UnsplashSource, is_unsplash_folder

DATA_DIR = Path(__file__).resolve().parent / "data"
#: ``progress(bytes_done, bytes_total_or_None)`` while downloading.
DownloadProgress = Callable[[int, int | None], None]
DatasetName = Literal["towhee", "unsplash-lite"]
_CHUNK = 1 << 20


def sample_manifest() -> Path:
    """The manifest of the bundled photos (``id,path,caption,label``; paths relative to it)."""
    return DATA_DIR / "photos.csv"


def sample_photo(photo_id: str) -> Path:
    """The path of one bundled photo, e.g. ``sample_photo("cat")``."""
    return DATA_DIR / "photos" / f"{photo_id}.jpg"


def sample_source() -> ManifestSource:
    """The bundled photos as an ingest source (ids, captions and labels from ``photos.csv``)."""
    return ManifestSource(sample_manifest())


@dataclass(frozen=True)
class Dataset:
    """A public dataset quickstart can fetch: where it lives and how it unpacks."""

    name: str
    url: str
    archive: str
    """File name of the downloaded zip in the data folder."""
    folder: str
    """Folder (in the data folder) the zip is extracted into."""
    description: str


DATASETS: dict[str, Dataset] = {
    "towhee": Dataset(
        name="towhee",
        url="https://github.com/towhee-io/examples/releases/download/data/reverse_image_search.zip",
        archive="reverse_image_search.zip",
        folder="reverse_image_search",
        description="towhee's reverse image search set: 1,000 ImageNet photos in 100 classes "
                    "(train/) plus query photos (test/), about 120 MB",
    ),
    "unsplash-lite": Dataset(
        name="unsplash-lite",
        # unsplash.com/data/lite/latest redirects to this archive (about 300 MB of TSV files).
        url="https://unsplash.com/data/lite/latest",
        archive="unsplash-research-dataset-lite-latest.zip",
        folder="unsplash-research-dataset-lite-latest",
        description="the Unsplash Lite research dataset: 25,000 photos with descriptions and keywords "
                    "(images are fetched from Unsplash's CDN while ingesting)",
    ),
}
TOWHEE_MANIFEST = "reverse_image_search.csv"


def dataset(name: str) -> Dataset:
    """The dataset called ``name`` (ValidationError naming ``--dataset`` otherwise)."""
    if name not in DATASETS:
        raise ValidationError(f"unknown dataset {name!r}", hint=f"use --dataset {' | '.join(DATASETS)}")
    return DATASETS[name]


def download(url: str, target: Path, *, progress: DownloadProgress | None = None, timeout: float = 60.0) -> Path:
    """Stream ``url`` to ``target`` (through ``target.part``, renamed when complete).

    Raises ToolkitError naming the URL on any HTTP or network failure (nothing is left behind).

    Example::

        download("https://example.org/data.zip", Path("data/data.zip"))
    """
    import urllib.error
    import urllib.request

    target.parent.mkdir(parents=True, exist_ok=True)
    part = target.with_name(target.name + ".part")
    request = urllib.request.Request(url, headers={"User-Agent": "toolkit-quickstart/0.1"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as resp, open(part, "wb") as fh:  # noqa: S310
            length = resp.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            done = 0
            if progress:
                progress(0, total)
            while chunk := resp.read(_CHUNK):
                fh.write(chunk)
                done += len(chunk)
                if progress:
                    progress(done, total)
        if total is not None and done != total:
            raise ToolkitError(f"download of {url} ended early ({done} of {total} bytes)",
                               hint="run the command again")
    except ToolkitError:
        part.unlink(missing_ok=True)
        raise
    except urllib.error.HTTPError as exc:
        part.unlink(missing_ok=True)
        raise ToolkitError(f"download of {url} failed: HTTP {exc.code} {exc.reason}",
                           hint="check the URL (--dataset-url) or download the zip yourself into "
                                "--data-dir") from exc
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        part.unlink(missing_ok=True)
        raise ToolkitError(f"download of {url} failed: {getattr(exc, 'reason', exc)}",
                           hint="check the internet connection, or download the zip yourself into "
                                "--data-dir") from exc
    part.replace(target)
    return target


def extract(archive: Path, dest: Path) -> Path:
    """Unzip ``archive`` into ``dest`` (created), refusing members that would land outside it.

    Extracts into ``dest.partial`` first and renames it, so an interrupted run never leaves a
    half-extracted folder that looks complete.
    """
    partial = dest.with_name(dest.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    try:
        with zipfile.ZipFile(archive) as zf:
            root = partial.resolve()
            for member in zf.infolist():
                target = (partial / member.filename).resolve()
                if not target.is_relative_to(root):
                    raise ToolkitError(f"{archive}: member {member.filename!r} points outside the folder",
                                       hint="the archive is not the expected dataset; delete it")
            zf.extractall(partial)
    except zipfile.BadZipFile as exc:
        shutil.rmtree(partial, ignore_errors=True)
        raise ToolkitError(f"{archive} is not a valid zip file ({exc})",
                           hint="delete it and run again to download it afresh") from exc
    shutil.rmtree(dest, ignore_errors=True)
    partial.replace(dest)
    return dest


def locate(name: str, folder: Path) -> Path:
    """What to ingest inside an extracted dataset folder: towhee's CSV, or the Unsplash TSV folder.

    The zip may hold the files at its top or inside one folder; both are found.
    """
    candidates = [folder, *sorted(p for p in folder.iterdir() if p.is_dir())] if folder.is_dir() else []
    for candidate in candidates:
        if name == "towhee" and (candidate / TOWHEE_MANIFEST).is_file():
            return candidate / TOWHEE_MANIFEST
        if name == "unsplash-lite" and is_unsplash_folder(candidate):
            return candidate
    expected = TOWHEE_MANIFEST if name == "towhee" else "photos.tsv000"
    raise ValidationError(f"{folder} does not look like the {name} dataset (no {expected} found)",
                          hint="delete the folder and its zip in --data-dir and run again")


def fetch_dataset(name: str, data_dir: Path, *, url: str | None = None,
                  progress: DownloadProgress | None = None, timeout: float = 60.0) -> Path:
    """Make the dataset available under ``data_dir`` and return what to ingest.

    Reuses an extracted folder, else extracts an archive already in ``data_dir``, else downloads it.

    Args:
        name: ``towhee`` or ``unsplash-lite``.
        data_dir: where the zip and the extracted folder go.
        url: download from here instead (a mirror).
        progress: ``progress(bytes_done, bytes_total)`` during the download.

    Example::

        fetch_dataset("towhee", Path("data"))   # Path('data/reverse_image_search/reverse_image_search.csv')
    """
    info = dataset(name)
    folder = data_dir / info.folder
    if folder.is_dir():
        try:
            return locate(name, folder)
        except ValidationError:
            pass  # an incomplete folder: extract again below
    archive = data_dir / info.archive
    if not archive.is_file():
        download(url or info.url, archive, progress=progress, timeout=timeout)
    extract(archive, folder)
    return locate(name, folder)


def dataset_source(name: str, path: Path) -> Source:
    """The ingest source for a located dataset (``fetch_dataset``'s return value)."""
    if name == "towhee":
        return ManifestSource(path)
    return UnsplashSource(path)


def query_image(name: str | None, path: Path | None) -> Path:
    """A photo to run the quickstart's image query with: a held-out towhee test photo, else the cat."""
    if name == "towhee" and path is not None:
        test = path.parent / "test"
        if test.is_dir():
            found = sorted(p for p in test.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
            if found:
                return found[0]
    return sample_photo("cat")
