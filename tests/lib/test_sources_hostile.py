"""Hostile local sources: one bad row, folder or file fails alone (an item with ``error``), nothing
blocks, nothing is lost, names print safely."""

from __future__ import annotations

import codecs
import json
import os
import socket
from pathlib import Path
from typing import Any

import pytest

from tests.lib.hostile_helpers import finishes, make_special
from toolkit.errors import ValidationError
from toolkit.images import sources
from toolkit.images.sources import (
    MAX_CELL_CHARS,
    DirectorySource,
    FailuresSource,
    LocalFileRefused,
    ManifestSource,
    open_local_file,
    open_source,
    printable,
)


def _by_position(items: list[Any]) -> dict[str, Any]:
    return {item.position: item for item in items}


# --- folder walks -----------------------------------------------------------------------------------


def test_an_unreadable_subfolder_is_one_failed_item_and_the_walk_goes_on(tmp_path: Path, monkeypatch) -> None:
    for name in ("a/1.jpg", "b/2.jpg", "b/3.jpg", "c/4.jpg"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    locked = tmp_path / "b"
    real_scandir = os.scandir

    def scandir(path: Any) -> Any:  # root reads any folder: make it as unreadable as chmod 000 does
        if os.path.samefile(path, locked):
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(sources.os, "scandir", scandir)
    items = list(open_source(tmp_path))
    assert [i.position for i in items] == ["a/1.jpg", "b/", "c/4.jpg"]
    failed = items[1]
    assert failed.location == str(locked)
    assert "cannot read folder b/: Permission denied" in (failed.error or "")
    assert "chmod" in (failed.error or "") and "--resume" in (failed.error or "")
    assert items[0].error is None and items[2].error is None


def test_an_unreadable_root_folder_is_a_validation_error(tmp_path: Path, monkeypatch) -> None:
    def scandir(path: Any) -> Any:
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(sources.os, "scandir", scandir)
    with pytest.raises(ValidationError, match="cannot list folder"):
        list(DirectorySource(tmp_path))


def test_special_files_named_like_images_fail_without_being_opened(tmp_path: Path) -> None:
    # A FIFO hung the run forever; a link to /dev/zero read forever (and ignored Ctrl-C).
    (tmp_path / "good.jpg").write_bytes(b"x")
    os.mkfifo(tmp_path / "fifo.jpg")
    (tmp_path / "zero.jpg").symlink_to("/dev/zero")
    (tmp_path / "gone.jpg").symlink_to(tmp_path / "nowhere.jpg")
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(tmp_path / "sock.png"))
    try:
        items = _by_position(finishes(lambda: list(open_source(tmp_path))))
    finally:
        server.close()
    assert items["good.jpg"].error is None
    assert "not a regular file but a FIFO" in items["fifo.jpg"].error
    assert "not a regular file but a character device" in items["zero.jpg"].error
    assert "not a regular file but a socket" in items["sock.png"].error
    assert "broken symbolic link" in items["gone.jpg"].error


@pytest.mark.parametrize("make", ["fifo", "dev_zero", "folder"])
def test_open_local_file_refuses_what_is_not_a_regular_file(tmp_path: Path, make: str) -> None:
    path = make_special(tmp_path / "x.jpg", make)
    with pytest.raises(LocalFileRefused, match="not a regular file"):
        finishes(open_local_file, path)


def test_a_file_that_grows_past_the_cap_while_read_fails(tmp_path: Path) -> None:
    path = tmp_path / "growing.jpg"
    path.write_bytes(b"x" * 10)
    with pytest.raises(LocalFileRefused, match="10 bytes is over the limit of 5 bytes"):
        open_local_file(path, max_bytes=5)
    with open_local_file(path, max_bytes=100) as fh:
        with open(path, "ab") as writer:
            writer.write(b"y" * 1000)
        with pytest.raises(LocalFileRefused, match="grew while being read"):
            fh.read()


def test_deep_nesting_is_walked_without_recursion(tmp_path: Path) -> None:
    # The recursive walk hit Python's recursion limit (~1000 levels): a RecursionError traceback.
    folders = [tmp_path / "d"]
    for _ in range(1199):
        folders.append(folders[-1] / "d")
    try:
        for folder in folders:
            os.mkdir(folder)  # one at a time: Path.mkdir(parents=True) recurses too
        (folders[-1] / "deep.jpg").write_bytes(b"x")
        items = list(open_source(tmp_path))
        assert len(items) == 1 and items[0].location == str(folders[-1] / "deep.jpg")
        assert items[0].error is None
    finally:  # shutil.rmtree (pytest's cleanup) recurses as well: take the tree down bottom-up
        (folders[-1] / "deep.jpg").unlink(missing_ok=True)
        for folder in reversed(folders):
            if folder.exists():
                os.rmdir(folder)


def test_hard_links_and_case_duplicates_are_each_an_item(tmp_path: Path) -> None:
    (tmp_path / "a.jpg").write_bytes(b"x")
    os.link(tmp_path / "a.jpg", tmp_path / "b.jpg")
    (tmp_path / "A.JPG").write_bytes(b"y")
    # Both names are items; the run dedups by content id (hard links share it), reported as skipped.
    assert sorted(i.position for i in open_source(tmp_path)) == ["A.JPG", "a.jpg", "b.jpg"]


def test_heic_avif_and_jpeg_xl_files_are_items_not_ignored(tmp_path: Path) -> None:
    # They were counted as "files without an image extension": an iPhone folder ingested nothing
    # and said nothing about why. Now each is an item that fails with the plugin to install.
    for name in ("a.heic", "b.HEIF", "c.avif", "d.jxl", "e.txt"):
        (tmp_path / name).write_bytes(b"x")
    source = open_source(tmp_path)
    assert [i.position for i in source] == ["a.heic", "b.HEIF", "c.avif", "d.jxl"]
    assert source.ignored_files == 1


def test_file_names_with_escapes_and_newlines_print_safely(tmp_path: Path) -> None:
    (tmp_path / "\x1b[2Jevil\nname.jpg").write_bytes(b"x")
    (item,) = list(open_source(tmp_path))
    assert item.position == "\\x1b[2Jevil\\nname.jpg" and item.position.isprintable()
    with open(item.location, "rb") as fh:  # the real path still reads
        assert fh.read() == b"x"
    assert printable("caf\u00e9 \u202egpj.exe") == "caf\u00e9 \\u202egpj.exe"


def test_names_that_are_not_utf8_fail_at_the_source_with_the_fix(tmp_path: Path) -> None:
    # Their path (with a lone surrogate) broke the bulk request and the failures file: the run stopped.
    root = os.fsencode(tmp_path)
    with open(root + b"/caf\xe9.jpg", "wb") as fh:
        fh.write(b"x")
    os.mkdir(root + b"/caf\xe9-folder")
    (tmp_path / "ok.jpg").write_bytes(b"x")
    items = list(open_source(tmp_path))
    assert [i.position for i in items] == ["caf\\xe9-folder", "caf\\xe9.jpg", "ok.jpg"]
    for item in items[:2]:
        assert "not valid UTF-8" in item.error and "rename" in item.error
        item.location.encode("utf-8")  # safe for JSON documents and the failures file
        json.dumps(item.error, ensure_ascii=False).encode("utf-8")
    with pytest.raises(ValidationError, match="not valid UTF-8"):
        open_source(os.fsdecode(root + b"/caf\xe9.jpg"))


def test_a_file_without_extension_that_is_a_jpeg_is_one_image(tmp_path: Path) -> None:
    path = tmp_path / "IMG_0001"
    path.write_bytes(b"\xff\xd8\xff\xe0" + b"\x00" * 20)
    source = open_source(path)
    assert source.kind == "single" and [i.location for i in source] == [str(path)]


# --- manifests --------------------------------------------------------------------------------------


def _manifest(tmp_path: Path, body: bytes, name: str = "m.csv") -> list[Any]:
    path = tmp_path / name
    path.write_bytes(body)
    return list(ManifestSource(path))


def test_a_latin1_byte_in_row_2501_fails_that_row_only(tmp_path: Path) -> None:
    rows = [f"{i},img{i}.jpg,caption {i}".encode() for i in range(1, 3001)]
    rows[2499] = b"2500,img2500.jpg,caf\xe9"  # line 2501 (the header is line 1)
    items = _manifest(tmp_path, b"id,path,caption\n" + b"\n".join(rows) + b"\n")
    assert len(items) == 3000
    bad = [i for i in items if i.error]
    assert [i.position for i in bad] == ["m.csv:2501"]
    assert "line 2501: byte 0xE9 at character 21 is not valid UTF-8" in bad[0].error
    assert "UTF-8" in bad[0].error and "--resume" in bad[0].error
    assert items[2500].id == "2501" and items[2500].position == "m.csv:2502"


def test_long_captions_are_read_and_oversize_cells_fail_their_row(tmp_path: Path) -> None:
    # Over 128 KiB (Python's csv default limit) was a `_csv.Error` traceback.
    long_caption = "a" * 200_000
    huge = "b" * (MAX_CELL_CHARS + 1)
    items = _manifest(tmp_path, (f"id,path,caption\n1,a.jpg,{long_caption}\n2,b.jpg,{huge}\n"
                                 "3,c.jpg,short\n").encode())
    assert items[0].caption == long_caption and items[0].error is None
    assert items[1].error and "column 'caption' has" in items[1].error and items[1].position == "m.csv:3"
    assert items[2].caption == "short"


def test_rows_with_the_wrong_number_of_fields_fail(tmp_path: Path) -> None:
    items = _manifest(tmp_path, b"id,path,label\n1,a.jpg,cat\n2,b.jpg,a, dog\n3,c.jpg\n4,d.jpg,fox,,\n")
    assert items[0].error is None and items[3].error is None and items[3].label == "fox"
    assert "has 4 fields, the header has 3" in items[1].error and "double quotes" in items[1].error
    assert "has 2 fields, the header has 3" in items[2].error


def test_an_unclosed_quote_fails_its_row_instead_of_swallowing_the_next_ones_silently(tmp_path: Path) -> None:
    items = _manifest(tmp_path, b'id,path\n1,a.jpg\n2,"b.jpg\n3,c.jpg\n')
    assert items[0].error is None
    assert items[1].position == "m.csv:3" and "holds a line break" in items[1].error


def test_a_line_longer_than_the_limit_fails_alone(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(sources, "MAX_LINE_CHARS", 1000)
    items = _manifest(tmp_path, b"id,path\n1,a.jpg\n2," + b"x" * 5000 + b"\n3,c.jpg\n")
    assert [i.id for i in items if not i.error] == ["1", "3"]
    (bad,) = [i for i in items if i.error]
    assert "line 3: longer than" in bad.error


@pytest.mark.parametrize(("encoded", "name"), [
    (codecs.BOM_UTF8 + "id,path,caption\r\n1,a.jpg,café\r\n".encode(), "bom-crlf.csv"),
    ("id\tpath\tcaption\r\n1\ta.jpg\tcafé\r\n".encode("utf-16"), "excel-unicode.txt.tsv"),
    (codecs.BOM_UTF16_BE + "id,path,caption\n1,a.jpg,café\n".encode("utf-16-be"), "be.csv"),
    ("id,path,caption\r1,a.jpg,café\r".encode(), "old-mac.csv"),
    ("id,path,caption\n1,a.jpg,café\n".encode("utf-16-le"), "no-bom-le.csv"),
    ("id,path,caption\n1,a.jpg,café\n".encode("utf-16-be"), "no-bom-be.csv"),
])
def test_bom_crlf_utf16_and_old_mac_line_ends(tmp_path: Path, encoded: bytes, name: str) -> None:
    (item,) = _manifest(tmp_path, encoded, name)
    assert (item.id, Path(item.location).name, item.caption, item.error) == ("1", "a.jpg", "café", None)


def test_a_manifest_without_line_breaks_is_refused_in_bounded_memory(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(sources, "MAX_LINE_CHARS", 1000)
    with pytest.raises(ValidationError, match="header row is too long"):
        _manifest(tmp_path, b"id,path," + b"x" * 100_000)


def test_column_names_in_messages_print_safely(tmp_path: Path) -> None:
    with pytest.raises(ValidationError) as info:
        _manifest(tmp_path, b"id,\x1b[2Jimage\n1,a.jpg\n")
    assert "columns: id, \\x1b[2Jimage" in info.value.message and "\x1b" not in info.value.message


def test_empty_and_header_only_manifests(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="empty manifest"):
        _manifest(tmp_path, b"")
    assert _manifest(tmp_path, b"id,path,label\n") == []


def test_unsplash_and_url_list_rows_fail_alone(tmp_path: Path) -> None:
    folder = tmp_path / "unsplash"
    folder.mkdir()
    (folder / "photos.tsv000").write_bytes(
        b"photo_id\tphoto_image_url\tphoto_description\n"
        b"p1\thttps://images.unsplash.com/1\tok\np2\thttps://images.unsplash.com/2\tcaf\xe9\n"
        b"p3\thttps://images.unsplash.com/3\tfine\n")
    items = list(open_source(folder))
    assert [i.id for i in items] == ["p1", None, "p3"]
    assert items[1].position == "photos.tsv000:3" and "byte 0xE9" in items[1].error
    listing = tmp_path / "list.txt"
    listing.write_bytes(b"https://e.com/a.jpg\nhttps://e.com/caf\xe9.jpg\nhttps://e.com/c.jpg\n")
    items = list(open_source(listing))
    assert [i.location for i in items] == ["https://e.com/a.jpg", "", "https://e.com/c.jpg"]
    assert "list.txt line 2: byte 0xE9" in items[1].error


# --- failures files ---------------------------------------------------------------------------------


def test_retrying_a_failed_folder_walks_it_again_and_a_bad_row_fails_again(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "x.jpg").write_bytes(b"x")
    records = [
        {"location": str(tmp_path / "sub"), "stage": "source", "reason": "cannot read folder sub/",
         "position": "sub/"},
        {"location": "", "stage": "source", "reason": "manifest m.csv line 7: byte 0xE9", "position": "m.csv:7"},
        {"location": str(tmp_path / "a.jpg"), "stage": "decode", "reason": "truncated", "position": "a.jpg"},
    ]
    os.mkfifo(tmp_path / "still-a-fifo.jpg")
    (tmp_path / "was-a-fifo.jpg").write_bytes(b"x")
    for name in ("still-a-fifo.jpg", "was-a-fifo.jpg"):
        records.append({"location": str(tmp_path / name), "stage": "source", "position": name,
                        "reason": "not a regular file but a FIFO (named pipe)"})
    file = tmp_path / "f.jsonl"
    file.write_text("".join(json.dumps(r) + "\n" for r in records) + "{broken\n")
    items = list(FailuresSource(file))
    assert [(i.position, i.location) for i in items] == [
        ("sub/x.jpg", str(tmp_path / "sub" / "x.jpg")), ("m.csv:7", ""), ("a.jpg", str(tmp_path / "a.jpg")),
        ("still-a-fifo.jpg", str(tmp_path / "still-a-fifo.jpg")),
        ("was-a-fifo.jpg", str(tmp_path / "was-a-fifo.jpg")), ("f.jsonl:6", "")]
    assert [i.error is None for i in items] == [True, False, True, False, True, False]
    assert items[1].error == "manifest m.csv line 7: byte 0xE9"
    assert items[3].error == "not a regular file but a FIFO (named pipe)"  # the reason, not "file not found"
    assert "f.jsonl line 6: not a failures record" in items[5].error


def test_jsonl_manifests_read_each_object_and_fail_bad_lines_alone(tmp_path: Path) -> None:
    # A .jsonl file was taken for a URL list: every line became a "file not found" path.
    manifest = tmp_path / "m.jsonl"
    manifest.write_bytes(
        b'{"id": 1, "path": "a.jpg", "caption": "a cat", "tags": ["x"]}\n\n'
        b'{"id": "2", "url": "https://e.com/b.jpg"}\nnot json\n[1]\n'
        b'{"id": "6", "path": "caf\xe9.jpg"}\n{"id": "7", "path": "c.jpg", "color": "red"}\n')
    source = open_source(manifest)
    assert source.kind == "manifest"
    items = list(source)
    assert [(i.position, i.id) for i in items] == [
        ("m.jsonl:1", "1"), ("m.jsonl:3", "2"), ("m.jsonl:4", None), ("m.jsonl:5", None), ("m.jsonl:6", None),
        ("m.jsonl:7", "7")]
    assert (Path(items[0].location), items[0].caption, items[0].metadata) == (
        tmp_path / "a.jpg", "a cat", {"tags": '["x"]'})
    assert items[1].location == "https://e.com/b.jpg"  # keys may differ from object to object
    assert "line 4: not JSON" in items[2].error and "line 5: not a JSON object" in items[3].error
    assert "line 6: byte 0xE9" in items[4].error
    assert items[5].metadata == {"color": "red"}
    (tmp_path / "bad.jsonl").write_text("id,path\n1,a.jpg\n")
    with pytest.raises(ValidationError, match="line 1: not JSON"):
        list(open_source(tmp_path / "bad.jsonl"))
