"""``toolkit serve``'s JSON API and thumbnails against the test cluster (tiny models, real uvicorn on
127.0.0.1): the same requests as ``toolkit search``, the CLI's errors with their fix, the token, the
Host/Origin checks, upload caps, and traversal attempts."""

from __future__ import annotations

import base64
import io
import subprocess
import sys
import textwrap
from urllib.parse import quote

import pytest

from tests.lib.serve_helpers import (
    DEVICE_DOC,
    MISSING_DOC,
    PASSWD_DOC,
    PASSWORD,
    URL_DOC,
    http,
    multipart,
    png,
    serve_env,
    start_app,
)
from toolkit import search as s
from toolkit.serve import check_bind, create_app, is_loopback
from toolkit.settings import load_settings

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")

TOKEN = "tok-" + "x7Qp2mZr9LwN4vKs"


@pytest.fixture(scope="module")
def env():
    return serve_env()


@pytest.fixture(scope="module")
def site(env):
    running = start_app(create_app(env.settings, embedder=env.embedder))
    yield running.url
    running.stop()


@pytest.fixture(scope="module")
def locked(env):
    running = start_app(create_app(env.settings, embedder=env.embedder, token=TOKEN))
    yield running.url
    running.stop()


def get(site, path, **headers):
    return http("GET", site + path, headers=headers)


def post_form(site, fields, files=None, **headers):
    body, ctype = multipart(fields, files)
    return http("POST", site + "/api/search", data=body, headers={"content-type": ctype, **headers})


def ids(reply):
    return [h["id"] for h in reply.json()["hits"]]


# --------------------------------------------------------------------------------------------------
# Searching: the same requests and JSON as `toolkit search --json`


def test_text_search_answers_like_search_json_and_shows_the_request(env, site):
    reply = get(site, "/api/search?q=" + quote("a cat") + "&k=5")
    assert reply.status == 200, reply.text
    data = reply.json()
    expected = s.search(settings=env.settings, text="a cat", options=s.SearchOptions(k=5), client=env.client)
    plain = {k: v for k, v in data.items() if k != "devtools"}
    for hit in plain["hits"]:
        assert hit.pop("thumbnail") == "/thumb/" + quote(hit["id"], safe="")
    mirrored = expected.as_json()
    assert {k: v for k, v in plain.items() if k != "took_ms"} == {k: v for k, v in mirrored.items() if k != "took_ms"}
    # The request behind the results is exactly what `toolkit search --dry-run` prints.
    dry = s.search(settings=env.settings, text="a cat", options=s.SearchOptions(k=5))
    assert data["devtools"] == s.render_steps(dry.steps)
    assert data["devtools"].startswith("# text search") and "POST images/_search" in data["devtools"]


@pytest.mark.parametrize("text", ["eine Katze auf dem Sofa", "一只猫"])
def test_text_in_other_languages_is_embedded_by_the_cluster(site, text):
    reply = get(site, "/api/search?q=" + quote(text) + "&k=3")
    assert reply.status == 200, reply.text
    assert len(reply.json()["hits"]) == 3
    assert f'"model_text": "{text}"' in reply.json()["devtools"]


def test_label_filter_collapse_and_hybrid(site):
    labelled = get(site, "/api/search?q=picture&k=10&label=web")
    assert labelled.status == 200, labelled.text
    assert sorted(ids(labelled)) == sorted([URL_DOC, MISSING_DOC, PASSWD_DOC, DEVICE_DOC])
    assert '"term": {\n        "label": "web"' in labelled.json()["devtools"]
    collapsed = get(site, "/api/search?q=picture&k=10&label=web&collapse=true")
    assert len(collapsed.json()["hits"]) == 1          # the four share relation_id r-web
    assert '"collapse": {\n    "field": "relation_id"' in collapsed.json()["devtools"]
    hybrid = get(site, "/api/search?q=cat&k=3&hybrid=on")
    assert hybrid.status == 200, hybrid.text
    assert hybrid.json()["mode"] == "rrf" and '"rrf"' in hybrid.json()["devtools"]   # trial license


def test_more_like_this_leaves_the_document_out(site):
    reply = get(site, "/api/search?like=cat&k=4")
    assert reply.status == 200, reply.text
    data = reply.json()
    assert data["kind"] == "like" and "cat" not in ids(reply) and len(ids(reply)) == 4
    assert "# read the stored image_embedding of document cat" in data["devtools"]
    assert '"must_not"' in data["devtools"]


def test_upload_and_image_url_search(env, site):
    upload = post_form(site, {"k": "3"}, {"image": ("red.png", png(), "image/png")})
    assert upload.status == 200, upload.text
    assert upload.json()["kind"] == "image" and len(upload.json()["hits"]) == 3
    assert "with the embedding of the upload red.png" in upload.json()["devtools"]
    url = f"http://127.0.0.1:{env.image_server.server_address[1]}/pic.png"
    before = env.downloads.count("/pic.png")
    by_url = get(site, "/api/search?k=2&image_url=" + quote(url, safe=""))
    assert by_url.status == 200, by_url.text
    assert by_url.json()["kind"] == "image" and env.downloads.count("/pic.png") == before + 1


# --------------------------------------------------------------------------------------------------
# The CLI's errors, with their fix


@pytest.mark.parametrize(("query", "message", "hint"), [
    ("", "give exactly one of", "type a query"),
    ("?q=cat&like=cat", "(got text and more like this)", "type a query"),
    ("?q=cat&k=0", "k must be between 1 and 200", "give k from 1 to 200"),
    ("?q=cat&k=lots", "k must be a whole number, got 'lots'", "give k"),
    ("?like=cat&hybrid=true", "hybrid matches the caption text", "untick hybrid"),
    ("?like=no-such-doc", "no document with id 'no-such-doc'", "id"),
    ("?q=cat&label=web&label=", None, None),
])
def test_bad_queries_get_the_message_and_the_fix(site, query, message, hint):
    reply = get(site, "/api/search" + query)
    if message is None:
        assert reply.status == 200, reply.text
        return
    assert reply.status in (400, 404), reply.text
    error = reply.json()["error"]
    assert message in error["message"] and hint in error["hint"]


def test_missing_index_and_stopped_model_say_what_to_run(env):
    missing = start_app(create_app(env.settings, embedder=env.embedder, index="no-such-index"))
    try:
        reply = get(missing.url, "/api/search?q=cat")
        assert reply.status == 404
        assert reply.json()["error"]["message"] == "index or alias 'no-such-index' does not exist"
        assert "toolkit setup" in reply.json()["error"]["hint"]
        config = get(missing.url, "/api/config").json()
        assert config["labels"] == [] and "toolkit setup" in config["error"]["hint"]
    finally:
        missing.stop()
    from toolkit.textmodel import start, start_options, stop

    running = start_app(create_app(env.settings, embedder=env.embedder))
    stop(env.client, "tiny-text-64", force=True)
    try:
        reply = get(running.url, "/api/search?q=cat")
        image = post_form(running.url, {"k": "2"}, {"image": ("red.png", png(), "image/png")})
    finally:
        start(env.client, "tiny-text-64", start_options(env.settings))
        running.stop()
    assert reply.status == 404 and "tiny-text-64" in reply.json()["error"]["message"]
    assert "toolkit deploy-model" in reply.json()["error"]["hint"]
    assert image.status == 200          # image search needs no model in the cluster


def test_a_basic_license_names_the_trial(env, site):
    env.es.state.license_type = "basic"
    try:
        reply = get(site, "/api/search?q=cat")
        image = post_form(site, {"k": "2"}, {"image": ("red.png", png(), "image/png")})
    finally:
        env.es.state.license_type = "trial"
    assert reply.status == 403, reply.text
    assert "_license/start_trial" in reply.json()["error"]["hint"]
    assert image.status == 200                     # image search works on any license


def test_uploads_over_the_ingest_caps_are_refused(env):
    small = load_settings(environ={}, overrides={
        "elasticsearch.url": env.es.url, "elasticsearch.username": "elastic", "elasticsearch.password": PASSWORD,
        "index.image_dims": 64, "ingest.max_download_bytes": 2000, "ingest.max_image_pixels": 1000})
    running = start_app(create_app(small, embedder=env.embedder))
    try:
        too_big = post_form(running.url, {"k": "2"}, {"image": ("big.bin", b"\0" * 200_000, "image/png")})
        bomb = post_form(running.url, {"k": "2"}, {"image": ("wide.png", png(size=(60, 40)), "image/png")})
        broken = post_form(running.url, {"k": "2"}, {"image": ("x.png", b"not a png at all", "image/png")})
    finally:
        running.stop()
    assert too_big.status == 413 and "larger than" in too_big.json()["error"]["message"]
    assert bomb.status == 400, bomb.text
    assert "2400 pixels is over the limit of 1000 pixels" in bomb.json()["error"]["message"]
    assert bomb.json()["error"]["message"].startswith("upload wide.png: ")
    assert broken.status == 400 and "not an image" in broken.json()["error"]["message"]


# --------------------------------------------------------------------------------------------------
# Thumbnails: by document id only


def test_thumbnails_are_resized_jpegs_of_indexed_images(env, site):
    from PIL import Image

    reply = get(site, "/thumb/cat")
    assert reply.status == 200 and reply.headers["content-type"] == "image/jpeg"
    assert Image.open(io.BytesIO(reply.body)).size == (256, 170)       # cat.jpg is 451x300
    before = env.downloads.count("/pic.png")
    url_thumb = "/thumb/" + quote(URL_DOC, safe="")
    first, second = get(site, url_thumb), get(site, url_thumb)
    assert first.headers["content-type"] == second.headers["content-type"] == "image/jpeg"
    assert env.downloads.count("/pic.png") - before <= 1               # cached: downloaded once at most


@pytest.mark.parametrize(("doc_id", "reason"), [
    (MISSING_DOC, "file not found"),
    (PASSWD_DOC, "not an image"),
    (DEVICE_DOC, "not a regular file"),
])
def test_unusable_images_get_a_placeholder_and_the_reason(site, doc_id, reason):
    reply = get(site, "/thumb/" + doc_id)
    assert reply.status == 200 and reply.headers["content-type"].startswith("image/svg+xml")
    assert reason in reply.headers["x-thumbnail-error"]
    assert b"no preview" in reply.body and b"root:" not in reply.body


@pytest.mark.parametrize("path", [
    "/thumb/..%2F..%2F..%2Fetc%2Fpasswd",
    "/thumb/../../etc/passwd",
    "/thumb/%2Fetc%2Fpasswd",
    "/thumb//etc/passwd",
    "/static/../app.py",
    "/static/%2e%2e/app.py",
    "/static/..%2Fapp.py",
    "/static/%2e%2e%2f%2e%2e%2fsearch.py",
    "/api/search?image_url=/etc/passwd",
    "/api/search?image_url=file:///etc/passwd",
    "/api/search?image_url=" + quote("../../etc/passwd", safe=""),
])
def test_traversal_attempts_reach_no_file(site, path):
    reply = get(site, path)
    assert reply.status in (400, 404), (reply.status, reply.text[:200])
    assert b"root:" not in reply.body and b"import " not in reply.body
    if path.startswith("/api/"):
        assert "http:// or https://" in reply.json()["error"]["message"]


# --------------------------------------------------------------------------------------------------
# Security: token, Host, Origin, headers, secrets


def test_no_token_means_loopback_only():
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("[::1]") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.5") and not is_loopback("example.org")
    from toolkit.errors import ValidationError

    with pytest.raises(ValidationError, match="needs an access token") as refused:
        check_bind("0.0.0.0", None)
    assert "TOOLKIT_SERVE_TOKEN" in refused.value.hint
    with pytest.raises(ValidationError, match="too short"):
        check_bind("0.0.0.0", "short")
    check_bind("0.0.0.0", TOKEN)
    check_bind("127.0.0.1", None)


def test_other_host_names_and_cross_site_posts_are_refused(site):
    port = site.rsplit(":", 1)[1]
    assert get(site, "/api/config", Host="localhost:" + port).status == 200
    rebound = get(site, "/api/config", Host="evil.example:" + port)
    assert rebound.status == 400 and "answers to" in rebound.json()["error"]["message"]
    cross = post_form(site, {"q": "cat"}, Origin="http://evil.example")
    assert cross.status == 403
    same = post_form(site, {"q": "cat", "k": "2"}, Origin=site)
    assert same.status == 200, same.text


def test_the_token_is_checked_on_every_request(locked):
    for path in ("/", "/api/config", "/api/search?q=cat", "/thumb/cat", "/static/app.js"):
        assert get(locked, path).status == 401, path
        assert get(locked, path, Authorization="Bearer " + TOKEN[:-1] + "y").status == 401, path
        assert get(locked, path, Authorization="Bearer " + TOKEN).status == 200, path
    assert get(locked, "/api/search?q=cat&token=" + TOKEN).status == 401   # only the page takes ?token=
    login = get(locked, "/?token=" + TOKEN)
    assert login.status == 303 and login.headers["location"] == "/"
    cookie = login.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
    jar = cookie.split(";", 1)[0]
    assert get(locked, "/thumb/cat", Cookie=jar).status == 200
    assert get(locked, "/thumb/cat", Cookie=jar[:-2]).status == 401
    assert TOKEN not in get(locked, "/", Cookie=jar).text


def test_credentials_never_reach_the_browser(env, site):
    basic = base64.b64encode(f"elastic:{PASSWORD}".encode()).decode()
    replies = [get(site, p) for p in ("/", "/static/app.js", "/static/style.css", "/api/config",
                                      "/api/search?q=cat", "/api/search?like=nope", "/thumb/nope")]
    # A query that contains the password (a user pasting the wrong thing) comes back masked.
    replies.append(get(site, "/api/search?q=" + quote(PASSWORD)))
    replies.append(get(site, "/api/search?image_url=" + quote(f"http://127.0.0.1:1/{PASSWORD}.png", safe="")))
    for reply in replies:
        assert PASSWORD not in reply.text and basic not in reply.text
        assert PASSWORD not in str(reply.headers)
    assert "********" in replies[-2].text


def test_pages_carry_security_headers(site):
    reply = get(site, "/")
    assert reply.status == 200 and "text/html" in reply.headers["content-type"]
    csp = reply.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert reply.headers["x-content-type-options"] == "nosniff"
    assert "inline" not in csp


def test_text_queries_do_not_load_torch(env):
    """The page's text path, end to end in a fresh process, never imports torch."""
    code = textwrap.dedent(f"""
        import sys, urllib.request
        from toolkit.settings import load_settings
        from toolkit.serve import create_app
        from tests.lib.serve_helpers import start_app, http
        settings = load_settings(environ={{}}, overrides={{
            "elasticsearch.url": {env.es.url!r}, "elasticsearch.username": "elastic",
            "elasticsearch.password": {PASSWORD!r}, "text_model.model_id": "tiny-text-64",
            "index.image_dims": 64}})
        running = start_app(create_app(settings))
        reply = http("GET", running.url + "/api/search?q=cat&k=2")
        thumb = http("GET", running.url + "/thumb/cat")
        running.stop()
        assert reply.status == 200 and thumb.status == 200, (reply.status, reply.text)
        print("torch" in sys.modules, "PIL" in sys.modules)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         cwd=str(__import__("pathlib").Path(__file__).resolve().parents[2]))
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split()[-2:] == ["False", "True"]     # thumbnails need Pillow, not torch


@pytest.mark.parametrize(("make", "message"), [
    (lambda: multipart({f"f{i}": "x" for i in range(80)}), "the form could not be read"),
    (lambda: (b'{"q": "cat"}', "application/json"), "takes a form"),
    (lambda: (b"--nope\r\nbroken", "multipart/form-data; boundary=other"), None),
])
def test_hostile_forms_are_refused_with_a_reason(site, make, message):
    body, ctype = make()
    reply = http("POST", site + "/api/search", data=body, headers={"content-type": ctype})
    assert reply.status == 400, reply.text
    if message:
        assert message in reply.json()["error"]["message"]


def test_an_empty_thumbnail_id_is_a_clear_400(site):
    reply = get(site, "/thumb/")
    assert reply.status == 400 and reply.json()["error"]["message"] == "a document id is needed"
