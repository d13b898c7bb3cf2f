"""``toolkit quickstart``: from an empty cluster to search results in one command.

Steps: wait for the cluster (``_cluster/health?wait_for_status=yellow``), deploy the text model
(``toolkit deploy-model``), install the assets (``toolkit setup``), ingest the bundled photos (or a
public dataset, see ``toolkit.datasets``), run a text query in English and in German and an image
query, and collect what to try next, with the Kibana Dev Tools requests. Every step is the library
function the matching command uses; re-running is cheap (deploy and setup are idempotent, ingest
resumes).

Example::

    report = quickstart(make_client(settings), settings, on_step=print)
    [q.result.hits[0].id for q in report.queries]
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from toolkit import datasets
from toolkit import search as s
from toolkit.devtools import Request, render, send
from toolkit.errors import AuthenticationFailed, AuthorizationFailed, ClusterError, ConnectionFailed, NotElasticsearch
from toolkit.settings import Settings

if TYPE_CHECKING:
    from elasticsearch import Elasticsearch

    from toolkit.ingest import IngestProgress, IngestReport
    from toolkit.provision import SetupReport
    from toolkit.textmodel import DeployReport, Progress

#: (language, text) of the two text queries, per dataset (None: the bundled photos).
TEXT_QUERIES: dict[str | None, tuple[tuple[str, str], tuple[str, str]]] = {
    None: (("en", "a cat"), ("de", "eine Katze")),
    "towhee": (("en", "a dog running on the grass"), ("de", "ein Hund, der über die Wiese läuft")),
    "unsplash-lite": (("en", "a dog in the snow"), ("de", "ein Hund im Schnee")),
}
DEFAULT_WAIT_SECONDS = 120.0


@dataclass
class QueryOutcome:
    """One query quickstart ran: a title, the query (text or image path), the request and the hits."""

    title: str
    kind: str
    query: str
    request: Request
    result: s.SearchResult

    def as_json(self) -> dict[str, Any]:
        return {"title": self.title, "kind": self.kind, "query": self.query, **self.result.as_json()}


@dataclass
class QuickstartReport:
    """What quickstart did, step by step. ``as_json()`` is the ``--json`` output."""

    cluster_status: str
    waited_seconds: float
    deploy: DeployReport
    setup: SetupReport
    ingest: IngestReport
    source: str
    queries: list[QueryOutcome] = field(default_factory=list)
    next_steps: list[str] = field(default_factory=list)
    devtools: str = ""

    def as_json(self) -> dict[str, Any]:
        return {
            "cluster": {"status": self.cluster_status, "waited_seconds": round(self.waited_seconds, 3)},
            "deploy": self.deploy.as_json(),
            "setup": {"results": [{"kind": r.kind, "name": r.name, "outcome": r.outcome}
                                  for r in self.setup.results], "warnings": self.setup.warnings},
            "source": self.source,
            "ingest": self.ingest.as_json(),
            "queries": [q.as_json() for q in self.queries],
            "next_steps": self.next_steps,
            "devtools": self.devtools,
        }


def health_request(wait_seconds: float) -> Request:
    """``GET _cluster/health?wait_for_status=yellow&timeout=<n>s``."""
    return Request("GET", "_cluster/health", params={"wait_for_status": "yellow",
                                                     "timeout": f"{max(1, int(wait_seconds))}s"})


def wait_for_cluster(client: Elasticsearch, *, timeout: float = DEFAULT_WAIT_SECONDS, interval: float = 2.0,
                     on_wait: Callable[[float, str], None] | None = None) -> tuple[str, float]:
    """Wait until the cluster answers and is at least yellow; return (status, seconds waited).

    A cluster that is still starting refuses connections or answers 408/503: both are waited out.
    Wrong credentials fail at once (waiting would not help).

    Args:
        timeout: give up after this many seconds (ConnectionFailed naming ``--wait``).
        on_wait: ``on_wait(seconds_so_far, why)`` after each attempt that was not ready yet.

    Example::

        status, waited = wait_for_cluster(client, timeout=60)
    """
    start = time.monotonic()
    why = "no answer yet"
    while True:
        elapsed = time.monotonic() - start
        left = timeout - elapsed
        try:
            body = send(client, health_request(min(10.0, max(1.0, left))), doing="waiting for the cluster")
            if not body.get("timed_out") and body.get("status") in ("green", "yellow"):
                return str(body["status"]), time.monotonic() - start
            why = f"status {body.get('status')}"
        except (AuthenticationFailed, AuthorizationFailed, NotElasticsearch):
            raise  # waiting would not help: wrong credentials, or another server on the URL
        except ConnectionFailed as exc:
            why = exc.message
        except ClusterError as exc:  # 408 (not yellow in time), 503 (no master yet)
            why = exc.message
        elapsed = time.monotonic() - start
        if elapsed >= timeout:
            raise ConnectionFailed(f"the cluster was not ready (yellow) after {timeout:.0f}s: {why}",
                                   hint="start it (docker compose up -d), check ES_URL / --es-url, or wait "
                                        "longer with --wait SECONDS")
        if on_wait:
            on_wait(elapsed, why)
        time.sleep(min(interval, max(0.0, timeout - elapsed)))


def next_steps(settings: Settings, *, image: Path, like_id: str | None) -> list[str]:
    """Commands to try after quickstart."""
    steps = [
        'toolkit search "a red bicycle leaning against a wall"',
        'toolkit search "ein Fahrrad an einer Wand" --show-request   # any language, and the request',
        f"toolkit search --image {image}",
    ]
    if like_id:
        steps.append(f"toolkit search --like {like_id}")
    steps += [
        "toolkit ingest path/to/your/photos/ --resume",
        "toolkit devtools > requests.txt   # every request, ready for Kibana Dev Tools",
        "toolkit smoke                      # the end-to-end check for CI",
    ]
    return steps


def quickstart(client: Elasticsearch, settings: Settings, *, dataset: str | None = None,
               data_dir: Path | None = None, dataset_url: str | None = None, limit: int | None = None,
               wait: float = DEFAULT_WAIT_SECONDS, skip_parity: bool = False, embedder: Any = None,
               on_step: Callable[[str], None] | None = None,
               on_wait: Callable[[float, str], None] | None = None,
               deploy_progress: Progress | None = None,
               download_progress: datasets.DownloadProgress | None = None,
               ingest_progress: Callable[[IngestProgress], None] | None = None) -> QuickstartReport:
    """Run the whole quickstart (see the module docstring) and report what happened.

    Args:
        dataset: None for the bundled photos, or ``towhee`` / ``unsplash-lite`` (downloaded to ``data_dir``).
        data_dir: where datasets go (default ``./toolkit-data``).
        dataset_url: download the dataset's zip from here instead (a mirror).
        limit: ingest at most this many items of the source.
        wait: seconds to wait for the cluster.
        skip_parity: do not compare the deployed model with the local one.
        embedder: an already loaded image embedder (default: the configured model, loaded once).
        on_step: called with a short line as each step starts.
        on_wait, deploy_progress, download_progress, ingest_progress: progress of the long steps.

    Example::

        report = quickstart(client, settings, dataset="towhee", data_dir=Path("data"), limit=200)
    """
    from toolkit import provision
    from toolkit.ingest import ingest, load_embedder
    from toolkit.textmodel import deploy
    from toolkit.textmodel.lifecycle import no_progress

    def step(line: str) -> None:
        if on_step:
            on_step(line)

    step(f"waiting for the cluster (up to {wait:.0f}s)")
    status, waited = wait_for_cluster(client, timeout=wait, on_wait=on_wait)

    step(f"deploying the text model {settings.text_model.hub_id}")
    deployed = deploy(client, settings, skip_parity=skip_parity, progress=deploy_progress or no_progress)

    step(f"installing templates, pipeline and index '{settings.index.alias}'")
    setup_report = provision.setup(client, settings)

    located: Path | None = None
    if dataset is None:
        source: Any = datasets.sample_source()
        described = f"the {sum(1 for _ in datasets.sample_source())} bundled photos"
    else:
        info = datasets.dataset(dataset)
        folder = data_dir or Path("toolkit-data")
        step(f"fetching {info.name}: {info.description}")
        located = datasets.fetch_dataset(dataset, folder, url=dataset_url, progress=download_progress)
        source = datasets.dataset_source(dataset, located)
        described = f"{info.name} ({located})"
    if limit is not None:
        source = itertools.islice(source, limit)
        described += f", first {limit}"

    step(f"embedding and indexing {described} with {settings.image_model.name}")
    if embedder is None:
        embedder = load_embedder(settings)
    ingested = ingest(client, settings, source=source, embedder=embedder, resume=True,
                      on_progress=ingest_progress)
    if ingested.error is not None:
        raise ingested.error
    send(client, Request("POST", f"{settings.index.alias}/_refresh"), doing="refreshing the index")

    report = QuickstartReport(cluster_status=status, waited_seconds=waited, deploy=deployed, setup=setup_report,
                              ingest=ingested, source=described)
    options = s.SearchOptions(k=3)
    step("searching")
    for language, text in TEXT_QUERIES[dataset]:
        request = s.text_query(text, settings, options)
        report.queries.append(QueryOutcome(f"text ({language})", "text", text, request, s.run(client, request)))
    image = datasets.query_image(dataset, located)
    vector = s.embed_query_image(image, settings, embedder=embedder)
    image_request = s.image_query(vector, settings, options)
    report.queries.append(QueryOutcome("image", "image", str(image), image_request, s.run(client, image_request)))

    first_hit = next((q.result.hits[0].id for q in report.queries if q.result.hits), None)
    report.next_steps = next_steps(settings, image=image, like_id=first_hit)
    from toolkit.textmodel import infer_request

    text = TEXT_QUERIES[dataset][1][1]
    report.devtools = "\n\n".join([
        f"# the German text query: the cluster embeds the text with {settings.text_model.cluster_deployment_id}",
        render(s.text_query(text, settings, options)),
        "# the embedding itself",
        render(infer_request(settings.text_model.cluster_deployment_id, [text])),
        "# how many images are indexed",
        render(Request("GET", f"{settings.index.alias}/_count")),
    ]) + "\n"
    return report
