"""An Elasticsearch 9.x compatible test cluster: a strict in-process HTTP server for the test suite.

No real Elasticsearch runs on our machines, so this server stands in for one. It answers every request
the toolkit, the official ``elasticsearch`` Python client and eland make, with ES's status codes, error
types and response shapes (see ``/work/shared/es-contract.md``). Modules: ``server`` (HTTP, routing,
auth, faults), ``state`` (indices, docs, aliases, templates, pipelines, license), ``mapping``,
``ingest``, ``search`` (query DSL, knn, rrf), ``ml`` (trained models, real TorchScript inference).

Starting it
-----------
In tests (in-process, ephemeral port on 127.0.0.1, daemon thread)::

    from tests.escluster.testing import running_cluster
    with running_cluster(license="trial", api_key=None, version="9.2.0", ml_nodes=1,
                         ml_memory_bytes=4 * 1024**3) as es:
        Elasticsearch(es.url).info()          # es.state is the Cluster, es.ml the MLStore

or with the pytest fixtures of ``tests/conftest.py``: ``escluster`` (trial license, one per test) and
``escluster_factory(license="basic", api_key="k", ...)`` (any number; all stopped at teardown).

As a process::

    python -m tests.escluster --host 127.0.0.1 --port 9200 [--license basic|trial] [--api-key KEY]
        [--password PW] [--version 9.2.0] [--ml-nodes N] [--ml-memory-bytes B]

prints ``listening on http://HOST:PORT`` once it accepts connections and serves until SIGTERM/SIGINT.
With ``--api-key KEY`` every request needs ``Authorization: ApiKey KEY`` (else 401
``security_exception``); ``--password PW`` also accepts basic auth ``elastic:PW``. ``/_test/*`` needs no
credentials.

Endpoints
---------
``/``, ``_cluster/health|state``, ``_nodes[/stats]``, ``_license`` (+ ``start_trial``, ``start_basic``),
index create/get/exists/delete/close/open, ``_refresh``, ``_mapping``, ``_settings``, ``_aliases`` /
``_alias``, ``_index_template``, ``_component_template``, ``_ingest/pipeline`` (+ ``_simulate``, verbose
too), ``_bulk``, ``_doc`` / ``_create`` / ``_update`` / ``_source``, ``_mget``, ``_delete_by_query``,
``_stats``, ``_cat/indices|health``, ``_search`` and ``_count`` (``search.py``), ``_ml/*`` (``ml.py``).
Unknown paths answer 400 ``no handler found for uri [...] and method [...]``; a known path with the wrong
method answers 405 like ES.

Behaviour worth knowing
-----------------------
* Documents become searchable on refresh: ``refresh=true|wait_for``, ``POST _refresh``, or the periodic
  refresh every ``index.refresh_interval`` (1s default, never for ``-1``). ``GET _doc`` is realtime.
* Single node: indices with replicas (the default 1) make the cluster ``yellow`` like a real 1-node ES.
* From 9.2, ``GET _doc`` leaves ``dense_vector`` values out of ``_source`` unless
  ``_source_exclude_vectors=false`` (or the index sets ``index.mapping.exclude_source_vectors: false``).
* Ingest ``if`` conditions: the common Painless forms are evaluated (``ctx.a?.b == 'x'``, ``!=``,
  ``null``, ``&&``, ``||``, ``!``, ``containsKey``...); anything else counts as true. ``script``
  processors are accepted but fail when run (no Painless).
* ``helpers.streaming_bulk`` retries item-level 429s only with ``raise_on_error=False`` (client behaviour).

Fault injection (paths ES never uses)
-------------------------------------
``POST /_test/faults`` adds faults (counters add up); ``GET /_test/faults`` shows what is pending;
``DELETE /_test/faults`` clears everything. Body keys:

* ``{"bulk_429_items": N}``: the next N bulk *items* fail with 429 ``es_rejected_execution_exception``
  (the ``_bulk`` request itself is 200 with ``errors: true``); ``streaming_bulk`` retries them.
* ``{"bulk_429_requests": N}``: the next N whole ``_bulk`` requests answer 429.
* ``{"fail_requests": N, "status": 503, "path_prefix": "/_bulk", "type": ..., "reason": ...}``: the next N
  requests whose path starts with ``path_prefix`` (default ``/``: any) answer ``status`` with an ES
  error body (type defaults by status: 429 ``es_rejected_execution_exception``, 503
  ``unavailable_shards_exception``).
* ``{"drop_connections": N, "path_prefix": "/"}``: the next N matching requests are read and then the
  socket is closed without a response.
* ``{"latency_ms": M}``: every request sleeps M ms before being handled (until cleared or set to 0).

``POST /_test/config`` ``{"ml_nodes": N, "ml_memory_bytes": B, "license": "basic"}`` changes those at run
time (the ML store reads them through callables); ``GET /_test/config`` shows them. In-process the same
is reachable as ``handle.state.faults.add({...})`` and ``handle.state.configure({...})``.
"""
