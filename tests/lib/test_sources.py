"""Sources: directory, manifest (CSV/TSV, column flags), Unsplash folder, URL list, failures file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from toolkit.errors import ValidationError
from toolkit.images.sources import (
    ColumnMap,
    FailuresSource,
    ManifestSource,
    open_source,
    unsplash_image_url,
)


def test_directory_yields_image_files_recursively_and_counts_the_rest(tmp_path: Path) -> None:
    (tmp_path / "b").mkdir()
    for name in ("a.JPG", "b/c.png", "b/d.webp", "e.tiff", "f.gif", "g.bmp", "h.jpeg"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "readme.txt").write_text("no")
    (tmp_path / ".hidden.jpg").write_bytes(b"x")
    source = open_source(tmp_path)
    assert source.kind == "directory"
    items = list(source)
    assert [i.position for i in items] == ["a.JPG", "b/c.png", "b/d.webp", "e.tiff", "f.gif", "g.bmp",
                                           "h.jpeg"]
    assert all(i.id is None and Path(i.location).is_file() for i in items)
    assert source.ignored_files == 1


def test_reverse_image_search_layout_needs_no_flags(tmp_path: Path) -> None:
    (tmp_path / "train").mkdir()
    manifest = tmp_path / "reverse_image_search.csv"
    manifest.write_text("id,path,label\n0,./train/brain/n001.JPEG,brain\n1,./train/fish/n002.JPEG,goldfish\n")
    source = open_source(manifest)
    assert source.kind == "manifest"
    items = list(source)
    assert [(i.id, i.label) for i in items] == [("0", "brain"), ("1", "goldfish")]
    assert Path(items[0].location) == tmp_path / "train/brain/n001.JPEG"  # relative to the manifest
    assert items[0].metadata == {}
    assert items[1].position == "reverse_image_search.csv:3"


def test_manifest_column_flags_metadata_and_sniffed_delimiter(tmp_path: Path) -> None:
    manifest = tmp_path / "products.csv"
    manifest.write_text(
        "sku;image;title;group;color;size\n"
        "A1;https://example.com/a.jpg;Red shoe;P1;red;42\n"
        "A2;/abs/b.png;Blue shoe;P1;;43\n")
    columns = ColumnMap(id="sku", url="image", caption="title", relation_id="group")
    items = list(ManifestSource(manifest, columns))
    assert items[0].location == "https://example.com/a.jpg" and items[0].is_url
    assert items[1].location == "/abs/b.png" and not items[1].is_url
    assert (items[0].id, items[0].caption, items[0].relation_id) == ("A1", "Red shoe", "P1")
    assert items[0].metadata == {"color": "red", "size": "42"}
    assert items[1].metadata == {"size": "43"}  # empty values dropped
    only = list(ManifestSource(manifest, ColumnMap(id="sku", url="image", metadata=("color",))))
    assert only[0].metadata == {"color": "red"}


def test_tsv_manifest(tmp_path: Path) -> None:
    manifest = tmp_path / "m.tsv"
    manifest.write_text("id\tpath\tcaption\n7\timg.jpg\ta cat, sitting\n")
    (item,) = list(open_source(manifest))
    assert (item.id, item.caption, Path(item.location)) == ("7", "a cat, sitting", tmp_path / "img.jpg")


@pytest.mark.parametrize(("columns", "flag"), [
    (ColumnMap(id="nope"), "--id-column"),
    (ColumnMap(metadata=("nope",)), "--metadata-columns"),
])
def test_unknown_column_names_the_flag(tmp_path: Path, columns: ColumnMap, flag: str) -> None:
    manifest = tmp_path / "m.csv"
    manifest.write_text("id,path\n1,a.jpg\n")
    with pytest.raises(ValidationError) as info:
        list(ManifestSource(manifest, columns))
    assert flag in (info.value.hint or "") and "nope" in info.value.message


def test_manifest_without_image_column_is_refused(tmp_path: Path) -> None:
    manifest = tmp_path / "m.csv"
    manifest.write_text("id,label\n1,cat\n")
    with pytest.raises(ValidationError) as info:
        list(open_source(manifest))
    assert "--path-column" in (info.value.hint or "")


def test_unsplash_folder_split_files_captions_keywords_local_files(tmp_path: Path) -> None:
    header = ("photo_id\tphoto_url\tphoto_image_url\tphoto_description\tai_description\t"
              "photographer_username\n")
    (tmp_path / "photos.tsv000").write_text(
        header
        + "p1\thttps://unsplash.com/photos/p1\thttps://images.unsplash.com/photo-1\tA red fox\t"
        + "an animal\tann\n"
        + "p2\thttps://unsplash.com/photos/p2\thttps://images.unsplash.com/photo-2?ixid=abc\t\t"
        + "snowy hills\tbob\n")
    (tmp_path / "photos.tsv001").write_text(  # later parts of the Full dataset repeat the header
        header + "p3\thttps://unsplash.com/photos/p3\thttps://images.unsplash.com/photo-3\t\t\tcy\n")
    (tmp_path / "keywords.tsv000").write_text(
        "photo_id\tkeyword\tai_service_1_confidence\tai_service_2_confidence\tsuggested_by_user\n"
        "p1\tfox\t\t\tt\np1\twinter\t\t\tt\np1\tmachine-tag\t90.1\t\tf\np1\tfox\t\t\tt\np2\thill\t\t\tt\n")
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "p3.jpg").write_bytes(b"x")
    source = open_source(tmp_path)
    assert source.kind == "unsplash"
    items = list(source)
    assert [i.id for i in items] == ["p1", "p2", "p3"]
    assert items[0].caption == "A red fox; fox, winter"          # user keywords only, no repeats
    assert items[1].caption == "snowy hills; hill"               # AI description when no photographer's
    assert items[2].caption is None
    assert items[0].location == "https://images.unsplash.com/photo-1?w=640"
    assert items[1].location == "https://images.unsplash.com/photo-2?ixid=abc&w=640"
    assert items[2].location == str(tmp_path / "photos" / "p3.jpg")
    assert items[0].metadata["photographer_username"] == "ann"
    assert items[2].position == "photos.tsv001:2"


def test_unsplash_url_width_replaces_an_existing_one() -> None:
    assert unsplash_image_url("https://images.unsplash.com/x?w=4000&q=80") == \
        "https://images.unsplash.com/x?q=80&w=640"


def test_url_list_skips_blanks_and_comments_and_resolves_paths(tmp_path: Path) -> None:
    listing = tmp_path / "list.txt"
    listing.write_text("# my images\nhttps://example.com/a.jpg\n\n  pics/b.png  \n/abs/c.jpg\n")
    source = open_source(listing)
    assert source.kind == "urls"
    assert [(i.location, i.position) for i in source] == [
        ("https://example.com/a.jpg", "list.txt:2"), (str(tmp_path / "pics/b.png"), "list.txt:4"),
        ("/abs/c.jpg", "list.txt:5")]


def test_failures_file_round_trip(tmp_path: Path) -> None:
    record = {"id": "x1", "location": "/a.jpg", "stage": "decode", "reason": "truncated",
              "position": "m.csv:3", "caption": "cap", "label": "l", "relation_id": None,
              "metadata": {"k": "v"}}
    file = tmp_path / "f.jsonl"
    file.write_text(json.dumps(record) + "\n\n")
    (item,) = list(FailuresSource(file))
    assert (item.id, item.location, item.caption, item.label, item.relation_id, item.metadata) == \
        ("x1", "/a.jpg", "cap", "l", None, {"k": "v"})
    file.write_text("not json\n")
    with pytest.raises(ValidationError):
        list(FailuresSource(file))


def test_open_source_detection_and_errors(tmp_path: Path) -> None:
    image = tmp_path / "one.png"
    image.write_bytes(b"x")
    assert [i.location for i in open_source(image)] == [str(image)]
    assert [i.location for i in open_source("https://example.com/a.jpg")] == ["https://example.com/a.jpg"]
    with pytest.raises(ValidationError):
        open_source(tmp_path / "missing")
    with pytest.raises(ValidationError):
        open_source(image, kind="directory")


def test_files_that_are_not_utf8_text_are_a_validation_error(tmp_path: Path) -> None:
    # A Latin-1 header and a binary file taken for a URL list: a clear error naming the file, never a
    # UnicodeDecodeError traceback. (A bad byte in a later row fails that row only: see below.)
    manifest = tmp_path / "m.csv"
    manifest.write_bytes(b"id,path,caf\xe9\n1,a.jpg,x\n")
    binary = tmp_path / "photo.dat"
    binary.write_bytes(b"\x88\xff\xfe\x01" * 50)
    failures = tmp_path / "f.jsonl"
    failures.write_bytes(b'{"location": "\xe9"}\n')
    unsplash = tmp_path / "unsplash"
    unsplash.mkdir()
    (unsplash / "photos.tsv000").write_bytes(b"photo_id\tphoto_descr\xe9ption\nx\tcafe\n")
    for source, what in ((open_source(manifest), "manifest"), (open_source(binary), "URL list"),
                         (FailuresSource(failures), "failures file"), (open_source(unsplash), "Unsplash file")):
        with pytest.raises(ValidationError, match=f"{what} .* is not UTF-8 text .*line 1: byte 0x"):
            list(source)


def test_urls_of_other_schemes_are_kept_as_given(tmp_path: Path) -> None:
    # Path() folded "s3://b/x.jpg" into "<folder>/s3:/b/x.jpg", which then failed as "file not found"
    # instead of fetch's "unsupported URL scheme".
    listing = tmp_path / "list.txt"
    listing.write_text("s3://bucket/a.jpg\nftp://host/b.jpg\n")
    assert [i.location for i in open_source(listing)] == ["s3://bucket/a.jpg", "ftp://host/b.jpg"]
    manifest = tmp_path / "m.csv"
    manifest.write_text("id,path\n1,s3://bucket/a.jpg\n2,pics/c.jpg\n")
    assert [i.location for i in open_source(manifest)] == ["s3://bucket/a.jpg", str(tmp_path / "pics/c.jpg")]


def test_directory_symlink_loops_are_walked_once(tmp_path: Path) -> None:
    # Two links back to the root made the walk exponential (each image seen ~2**40 times).
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x.jpg").write_bytes(b"x")
    (tmp_path / "a" / "up").symlink_to(tmp_path)
    (tmp_path / "a" / "up2").symlink_to(tmp_path)
    (tmp_path / "b").symlink_to(tmp_path / "a")
    assert [i.position for i in open_source(tmp_path)] == ["a/x.jpg"]
