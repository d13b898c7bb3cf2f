"""toolkit.datasets: the bundled photos, dataset layouts, download and extraction (all local).

The real archives are large; these tests build tiny zips with the same layouts (towhee's
``reverse_image_search.csv`` + ``train/`` + ``test/``; Unsplash Lite's ``photos.tsv000`` +
``keywords.tsv000`` at the top of the zip) and serve them from 127.0.0.1.
"""

from __future__ import annotations

import csv
import functools
import http.server
import threading
import zipfile
from contextlib import contextmanager
from pathlib import Path

import pytest

from toolkit import datasets
from toolkit.errors import ToolkitError, ValidationError


@contextmanager
def serve(folder: Path):
    """Serve ``folder`` over HTTP on 127.0.0.1; yields the base URL."""

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    handler = functools.partial(Quiet, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _png(rgb, seed):
    import io

    from PIL import Image

    image = Image.new("RGB", (48, 40), rgb)
    for x in range(0, 48, 4):
        image.putpixel((x, (x * 7 + seed) % 40), (255 - rgb[0], x * 5, seed * 30 % 255))
    buf = io.BytesIO()
    image.save(buf, "PNG")
    return buf.getvalue()


def towhee_zip(target: Path) -> Path:
    """A four-photo archive in towhee's layout (paths ``./train/<class>/<file>``, like the original)."""
    rows = [("0", "./train/goldfish/a.png", "goldfish", (230, 120, 20)),
            ("1", "./train/goldfish/b.png", "goldfish", (240, 140, 30)),
            ("2", "./train/tabby/c.png", "tabby", (120, 110, 90)),
            ("3", "./train/tabby/d.png", "tabby", (100, 90, 80))]
    with zipfile.ZipFile(target, "w") as zf:
        lines = ["id,path,label"] + [f"{i},{p},{label}" for i, p, label, _ in rows]
        zf.writestr("reverse_image_search.csv", "\n".join(lines) + "\n")
        for n, (_, p, _, rgb) in enumerate(rows):
            zf.writestr(p.removeprefix("./"), _png(rgb, n))
        zf.writestr("test/goldfish/q1.png", _png((235, 125, 25), 9))
    return target


def unsplash_zip(target: Path) -> Path:
    """Unsplash Lite's layout: TSV files at the top of the zip."""
    photos = [["photo_id", "photo_url", "photo_image_url", "photo_description", "ai_description",
               "photographer_username"],
              ["XMyPniM9LF0", "https://unsplash.com/photos/XMyPniM9LF0",
               "https://images.unsplash.com/photo-1414609245224-afa02bfb3fda", "Snowy mountain at dawn", "",
               "ansel"],
              ["abc123", "https://unsplash.com/photos/abc123", "https://images.unsplash.com/photo-2?w=4000", "",
               "a dog running in the snow", "dora"]]
    keywords = [["photo_id", "keyword", "ai_service_1_confidence", "suggested_by_user"],
                ["XMyPniM9LF0", "mountain", "", "t"], ["XMyPniM9LF0", "sunrise", "", "t"],
                ["XMyPniM9LF0", "machine-tag", "90.1", "f"], ["abc123", "dog", "", "t"]]

    def tsv(rows):
        import io

        buf = io.StringIO()
        csv.writer(buf, delimiter="\t", lineterminator="\n").writerows(rows)
        return buf.getvalue()

    with zipfile.ZipFile(target, "w") as zf:
        zf.writestr("photos.tsv000", tsv(photos))
        zf.writestr("keywords.tsv000", tsv(keywords))
        zf.writestr("DOCS.md", "# Unsplash Dataset\n")
    return target


def test_bundled_photos_are_small_real_photos_with_captions_and_licenses():
    from PIL import Image

    items = list(datasets.sample_source())
    assert [i.id for i in items] == ["astronaut", "coffee", "cat", "rocket", "deep-field", "camera", "brick-wall"]
    total = 0
    for item in items:
        file = Path(item.location)
        total += file.stat().st_size
        with Image.open(file) as image:
            assert image.format == "JPEG" and max(image.size) <= 640 and image.mode == "RGB"
        assert item.caption and len(item.caption.split()) >= 5 and item.label
    assert total < 600 * 1024
    licenses = (datasets.DATA_DIR / "LICENSES.md").read_text()
    for item in items:
        line = next(row for row in licenses.splitlines() if f"photos/{item.id}.jpg" in row)
        assert "CC0" in line or "Public domain" in line
    assert datasets.sample_photo("cat") == Path(items[2].location)


def test_towhee_download_extract_and_parse(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    towhee_zip(site / "reverse_image_search.zip")
    seen = []
    with serve(site) as base:
        located = datasets.fetch_dataset("towhee", tmp_path / "data", url=f"{base}/reverse_image_search.zip",
                                         progress=lambda done, total: seen.append((done, total)))
    assert located == tmp_path / "data" / "reverse_image_search" / "reverse_image_search.csv"
    size = (site / "reverse_image_search.zip").stat().st_size
    assert seen[0] == (0, size) and seen[-1] == (size, size)
    items = list(datasets.dataset_source("towhee", located))
    assert [(i.id, i.label) for i in items] == [("0", "goldfish"), ("1", "goldfish"), ("2", "tabby"), ("3", "tabby")]
    assert all(Path(i.location).is_file() for i in items)
    assert datasets.query_image("towhee", located).name == "q1.png"
    assert not list((tmp_path / "data").glob("*.part")) and not list((tmp_path / "data").glob("*.partial"))
    # Already there: no download (an unreachable URL is never used).
    assert datasets.fetch_dataset("towhee", tmp_path / "data", url="http://127.0.0.1:9/x.zip") == located


def test_unsplash_lite_extract_and_parse(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    # A zip already in the data folder is extracted without any download.
    unsplash_zip(data / "unsplash-research-dataset-lite-latest.zip")
    located = datasets.fetch_dataset("unsplash-lite", data, url="http://127.0.0.1:9/never.zip")
    assert located == data / "unsplash-research-dataset-lite-latest"
    items = list(datasets.dataset_source("unsplash-lite", located))
    assert [i.id for i in items] == ["XMyPniM9LF0", "abc123"]
    assert items[0].caption == "Snowy mountain at dawn; mountain, sunrise"
    assert items[1].caption == "a dog running in the snow; dog"
    assert items[0].location == "https://images.unsplash.com/photo-1414609245224-afa02bfb3fda?w=640"
    assert items[1].location == "https://images.unsplash.com/photo-2?w=640"
    assert datasets.query_image("unsplash-lite", located) == datasets.sample_photo("cat")


def test_a_failed_download_names_the_url_and_leaves_nothing(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    with serve(site) as base, pytest.raises(ToolkitError, match="HTTP 404") as info:
        datasets.fetch_dataset("towhee", tmp_path / "data", url=f"{base}/missing.zip")
    assert f"{base}/missing.zip" in info.value.message and "--data-dir" in info.value.hint
    assert list((tmp_path / "data").iterdir()) == []


def test_a_broken_or_foreign_archive_is_refused(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "reverse_image_search.zip").write_bytes(b"this is not a zip")
    with pytest.raises(ToolkitError, match="not a valid zip"):
        datasets.fetch_dataset("towhee", data)
    with zipfile.ZipFile(data / "reverse_image_search.zip", "w") as zf:
        zf.writestr("../evil.txt", "x")
    with pytest.raises(ToolkitError, match="outside the folder"):
        datasets.fetch_dataset("towhee", data)
    assert not (tmp_path / "evil.txt").exists()
    with zipfile.ZipFile(data / "reverse_image_search.zip", "w") as zf:
        zf.writestr("readme.txt", "x")
    with pytest.raises(ValidationError, match="does not look like the towhee dataset"):
        datasets.fetch_dataset("towhee", data)
    with pytest.raises(ValidationError, match="unknown dataset"):
        datasets.dataset("imagenet")
