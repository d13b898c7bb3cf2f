"""The query DSL of the test cluster: parse a query object, then run it against one index.

``parse_query(obj)`` validates the JSON like ES's parser does (400 ``parsing_exception`` and friends)
and returns a :class:`Query`; ``query.run(ctx)`` returns ``{doc_id: score}`` for the matching
documents of the index behind ``ctx`` (an :class:`IndexContext`). Scoring follows Lucene's BM25
(k1=1.2, b=0.75, norms encoded like ``SmallFloat.intToByte4``) for term-based queries on text and
keyword fields; filters (range, exists, terms, ids, prefix...) score a constant ``boost``.

Errors that ES raises on a shard (while building the Lucene query) are :class:`ShardError`; the
search layer wraps them into ``search_phase_execution_exception``.
"""

from __future__ import annotations

import fnmatch
import math
import re
from dataclasses import dataclass
from dataclasses import field as dc_field
from typing import Any

from tests.escluster.errors import ESError
from tests.escluster.fields import (
    DATE_TYPES,
    KEYWORD_TYPES,
    NUMERIC_TYPES,
    TEXT_TYPES,
    CoercionError,
    analyze,
    doc_values,
    f32,
    flatten_mappings,
    keyword_value,
    normalize_keyword,
    parse_date,
    source_values,
    to_bool,
    to_number,
    vector_value,
)

K1 = 1.2
B = 0.75


class ShardError(Exception):
    """A failure ES reports per shard: ``type``/``reason`` of the shard's exception (plus a cause)."""

    def __init__(self, type: str, reason: str, cause: dict | None = None) -> None:
        super().__init__(reason)
        self.type = type
        self.reason = reason
        self.cause = cause


def query_shard_error(reason: str) -> ShardError:
    """``query_shard_exception`` as ES wraps an exception thrown while building a query."""
    return ShardError("query_shard_exception", f"failed to create query: {reason}",
                      {"type": "illegal_argument_exception", "reason": reason})


def parsing_error(reason: str, **extra: Any) -> ESError:
    return ESError(400, "parsing_exception", reason, **extra)


# ---------------------------------------------------------------------------------------------- BM25 norms

def _long_to_int4(i: int) -> int:
    num_bits = i.bit_length()
    if num_bits < 4:
        return i
    shift = num_bits - 4
    encoded = (i >> shift) & 0x07
    return encoded | ((shift + 1) << 3)


def _int4_to_long(i: int) -> int:
    bits = i & 0x07
    shift = (i >> 3) - 1
    return bits if shift == -1 else (bits | 0x08) << shift


_NUM_FREE_VALUES = 255 - _long_to_int4(2**31 - 1)


def norm_length(length: int) -> int:
    """The field length Lucene remembers after its lossy one-byte norm encoding."""
    if length < _NUM_FREE_VALUES:
        return length
    return _NUM_FREE_VALUES + _int4_to_long(_long_to_int4(length - _NUM_FREE_VALUES))


# ---------------------------------------------------------------------------------------------- context

class IndexContext:
    """Per-request view of one index: mapping lookup plus cached tokens, values and BM25 statistics.

    Example::

        ctx = IndexContext(index_view)
        scores = parse_query({"match": {"title": "red car"}}).run(ctx)   # {"doc-1": 0.57, ...}
    """

    def __init__(self, index: Any) -> None:
        self.index = index
        self.name: str = index.name
        self.docs: dict[str, dict] = index.docs
        self.fields = flatten_mappings(index.mappings)
        self.matched: dict[str, list[str]] = {}
        self._tokens: dict[tuple[str, str], list[str]] = {}
        self._values: dict[tuple[str, str], list] = {}
        self._stats: dict[str, tuple[int, int]] = {}
        self._df: dict[tuple[str, str], int] = {}

    def spec(self, path: str) -> dict | None:
        return self.fields.get(path)

    def resolve(self, pattern: str) -> list[str]:
        """Field paths matching a name or wildcard pattern (objects left out)."""
        if "*" not in pattern:
            return [pattern] if pattern in self.fields else []
        return [p for p, s in self.fields.items()
                if fnmatch.fnmatchcase(p, pattern) and s.get("type") not in ("object", "nested")]

    def tokens(self, doc_id: str, path: str) -> list[str]:
        key = (doc_id, path)
        if key not in self._tokens:
            spec = self.fields[path]
            out: list[str] = []
            if spec.get("type") in KEYWORD_TYPES:
                out = [keyword_value(v) for v in self.values(doc_id, path)]
            else:
                for value in source_values(self.docs[doc_id], spec.get("_source_path", path)):
                    if not isinstance(value, (dict, list)):
                        out.extend(analyze(value, spec))
            self._tokens[key] = out
        return self._tokens[key]

    def values(self, doc_id: str, path: str) -> list:
        key = (doc_id, path)
        if key not in self._values:
            self._values[key] = doc_values(self.docs[doc_id], path, self.fields[path])
        return self._values[key]

    def stats(self, path: str) -> tuple[int, int]:
        """(docs with the field, total term count) like Lucene's CollectionStatistics."""
        if path not in self._stats:
            doc_count = total = 0
            keyword = self.fields[path].get("type") in KEYWORD_TYPES
            for doc_id in self.docs:
                toks = self.tokens(doc_id, path)
                if toks:
                    doc_count += 1
                    # Keyword fields index docs only (no freqs): Lucene counts each distinct term once.
                    total += len(set(toks)) if keyword else len(toks)
            self._stats[path] = (doc_count, total)
        return self._stats[path]

    def doc_freq(self, path: str, term: str) -> int:
        key = (path, term)
        if key not in self._df:
            self._df[key] = sum(1 for d in self.docs if term in self.tokens(d, path))
        return self._df[key]

    def bm25(self, path: str, term: str, boost: float) -> dict[str, float]:
        """BM25 scores of every document containing ``term`` in ``path`` (a Lucene TermQuery)."""
        doc_count, total = self.stats(path)
        df = self.doc_freq(path, term)
        if df == 0:
            return {}
        keyword = self.fields[path].get("type") in KEYWORD_TYPES
        idf = f32(math.log(1 + (doc_count - df + 0.5) / (df + 0.5)))
        avgdl = f32(total / doc_count)
        weight = f32(boost * idf)
        out = {}
        for doc_id in self.docs:
            toks = self.tokens(doc_id, path)
            if term not in toks:
                continue
            if keyword:
                freq, dl = 1, 1  # no norms, no freqs on keyword fields
            else:
                freq, dl = toks.count(term), norm_length(len(toks))
            norm_inverse = f32(1 / f32(K1 * f32((1 - B) + f32(B * dl / avgdl))))
            out[doc_id] = f32(weight - weight / (1 + freq * norm_inverse))
        return out

    def note_match(self, name: str | None, doc_ids: Any) -> None:
        if name:
            for doc_id in doc_ids:
                names = self.matched.setdefault(doc_id, [])
                if name not in names:
                    names.append(name)


# ---------------------------------------------------------------------------------------------- queries

@dataclass
class Query:
    """Base of all parsed queries: ``run(ctx)`` gives matching doc ids and their scores."""

    boost: float = 1.0
    name: str | None = None

    def run(self, ctx: IndexContext) -> dict[str, float]:
        hits = self._run(ctx)
        ctx.note_match(self.name, hits)
        return hits

    def _run(self, ctx: IndexContext) -> dict[str, float]:
        raise NotImplementedError


def _const(doc_ids: Any, boost: float) -> dict[str, float]:
    return {d: f32(boost) for d in doc_ids}


@dataclass
class MatchAll(Query):
    def _run(self, ctx: IndexContext) -> dict[str, float]:
        return _const(ctx.docs, self.boost)


@dataclass
class MatchNone(Query):
    def _run(self, ctx: IndexContext) -> dict[str, float]:
        return {}


def _id_matches(ctx: IndexContext, values: list, boost: float) -> dict[str, float]:
    wanted = {keyword_value(v) for v in values}
    return _const([d for d in ctx.docs if d in wanted], boost)


@dataclass
class Term(Query):
    field: str = ""
    value: Any = None
    case_insensitive: bool = False

    def _run(self, ctx: IndexContext) -> dict[str, float]:
        if self.field == "_id":
            return _id_matches(ctx, [self.value], self.boost)
        if self.field == "_index":
            return _const(ctx.docs, self.boost) if keyword_value(self.value) == ctx.name else {}
        spec = ctx.spec(self.field)
        if spec is None:
            return {}
        ftype = spec.get("type")
        if ftype in KEYWORD_TYPES or ftype in TEXT_TYPES:
            term = keyword_value(self.value)
            if ftype in KEYWORD_TYPES:
                term = normalize_keyword(term, spec)
            if self.case_insensitive:
                lowered = term.lower()
                docs = [d for d in ctx.docs if any(t.lower() == lowered for t in ctx.tokens(d, self.field))]
                return _const(docs, self.boost)
            return ctx.bm25(self.field, term, self.boost)
        wanted = _coerce_for(spec, self.value, self.field)
        docs = [d for d in ctx.docs if wanted in ctx.values(d, self.field)]
        if ftype == "boolean":
            return _const(docs, self.boost)
        return _const(docs, self.boost)


def _coerce_for(spec: dict, value: Any, field_name: str) -> Any:
    ftype = spec.get("type")
    try:
        if ftype in NUMERIC_TYPES:
            return to_number(value, ftype)
        if ftype in DATE_TYPES:
            return parse_date(value)
        if ftype == "boolean":
            return to_bool(value)
    except CoercionError as exc:
        raise query_shard_error(str(exc)) from None
    if ftype in ("dense_vector", "sparse_vector"):
        raise ShardError("query_shard_exception",
                         f"failed to create query: Field [{field_name}] of type [{ftype}] "
                         f"does not support term queries",
                         {"type": "illegal_argument_exception",
                          "reason": f"Field [{field_name}] of type [{ftype}] does not support term queries"})
    return value


@dataclass
class Terms(Query):
    field: str = ""
    values: list = dc_field(default_factory=list)

    def _run(self, ctx: IndexContext) -> dict[str, float]:
        if self.field == "_id":
            return _id_matches(ctx, self.values, self.boost)
        spec = ctx.spec(self.field)
        if spec is None:
            return {}
        ftype = spec.get("type")
        if ftype in KEYWORD_TYPES or ftype in TEXT_TYPES:
            keyword = ftype in KEYWORD_TYPES
            wanted = {normalize_keyword(keyword_value(v), spec) if keyword else keyword_value(v)
                      for v in self.values}
            docs = [d for d in ctx.docs if wanted.intersection(ctx.tokens(d, self.field))]
        else:
            coerced = [_coerce_for(spec, v, self.field) for v in self.values]
            docs = [d for d in ctx.docs if any(v in coerced for v in ctx.values(d, self.field))]
        return _const(docs, self.boost)


def minimum_should_match(spec: Any, optional: int) -> int:
    """Clauses required by a ``minimum_should_match`` spec ("2", "-1", "75%", "-25%") of ``optional``."""
    if spec is None:
        return 0
    text = str(spec).strip()
    # Combinations like "3<90%" are rare in tests; take the part after '<' when the count exceeds it.
    if "<" in text:
        cond, _, rest = text.partition("<")
        return optional if optional <= int(cond) else minimum_should_match(rest, optional)
    if text.endswith("%"):
        pct = float(text[:-1])
        n = int(optional * pct / 100) if pct >= 0 else optional - int(optional * -pct / 100)
    else:
        val = int(float(text))
        n = val if val >= 0 else optional + val
    return max(0, min(optional, n))


@dataclass
class Match(Query):
    field: str = ""
    text: Any = None
    operator: str = "or"
    msm: Any = None
    zero_terms_all: bool = False
    phrase: bool = False

    def _run(self, ctx: IndexContext) -> dict[str, float]:
        spec = ctx.spec(self.field)
        if self.field == "_id":
            return _id_matches(ctx, [self.text], self.boost)
        if spec is None:
            return {}
        ftype = spec.get("type")
        if ftype not in KEYWORD_TYPES and ftype not in TEXT_TYPES:
            return Term(boost=self.boost, field=self.field, value=self.text)._run(ctx)
        terms = analyze(self.text, spec, search=True)
        if not terms:
            return _const(ctx.docs, self.boost) if self.zero_terms_all else {}
        per_term = [ctx.bm25(self.field, t, self.boost) for t in terms]
        if self.phrase and len(terms) > 1:
            docs = [d for d in ctx.docs if _contains_phrase(ctx.tokens(d, self.field), terms)]
            return {d: f32(sum(s.get(d, 0.0) for s in per_term)) for d in docs}
        if self.operator == "and":
            required = len(terms)
        else:
            required = max(1, minimum_should_match(self.msm, len(terms))) if self.msm is not None else 1
        out: dict[str, float] = {}
        counts: dict[str, int] = {}
        for scores in per_term:
            for d, s in scores.items():
                out[d] = out.get(d, 0.0) + s
                counts[d] = counts.get(d, 0) + 1
        return {d: f32(s) for d, s in out.items() if counts[d] >= required}


def _contains_phrase(tokens: list[str], terms: list[str]) -> bool:
    n = len(terms)
    return any(tokens[i:i + n] == terms for i in range(len(tokens) - n + 1))


@dataclass
class MultiMatch(Query):
    fields: list = dc_field(default_factory=list)
    text: Any = None
    type: str = "best_fields"
    operator: str = "or"
    msm: Any = None
    tie_breaker: float | None = None

    def _run(self, ctx: IndexContext) -> dict[str, float]:
        per_field: list[dict[str, float]] = []
        patterns = self.fields or ["*"]
        for pattern in patterns:
            name, _, weight = pattern.partition("^")
            for path in ctx.resolve(name):
                spec = ctx.fields[path]
                if pattern == "*" and spec.get("type") not in KEYWORD_TYPES | TEXT_TYPES:
                    continue  # "*" in ES skips fields the text cannot be parsed for (lenient)
                query = Match(boost=self.boost * float(weight or 1.0), field=path, text=self.text,
                              operator=self.operator, msm=self.msm, phrase=self.type == "phrase")
                try:
                    per_field.append(query._run(ctx))
                except ShardError:
                    if pattern != "*":
                        raise
        out: dict[str, float] = {}
        if self.type == "most_fields":
            for scores in per_field:
                for d, s in scores.items():
                    out[d] = out.get(d, 0.0) + s
            return {d: f32(s) for d, s in out.items()}
        tie = self.tie_breaker or 0.0
        docs = set().union(*per_field) if per_field else set()
        for d in docs:
            scores = [s[d] for s in per_field if d in s]
            best = max(scores)
            out[d] = f32(best + tie * (sum(scores) - best))
        return out


@dataclass
class Bool(Query):
    must: list = dc_field(default_factory=list)
    should: list = dc_field(default_factory=list)
    filter: list = dc_field(default_factory=list)
    must_not: list = dc_field(default_factory=list)
    msm: Any = None

    def _run(self, ctx: IndexContext) -> dict[str, float]:
        candidates: set[str] | None = None
        total: dict[str, float] = {}
        for q in self.must:
            res = q.run(ctx)
            candidates = set(res) if candidates is None else candidates & set(res)
            for d, s in res.items():
                total[d] = total.get(d, 0.0) + s
        for q in self.filter:
            res = q.run(ctx)
            candidates = set(res) if candidates is None else candidates & set(res)
        should_results = [q.run(ctx) for q in self.should]
        if self.msm is not None:
            required = minimum_should_match(self.msm, len(self.should))
        else:
            required = 0 if (self.must or self.filter) else (1 if self.should else 0)
        counts: dict[str, int] = {}
        for res in should_results:
            for d, s in res.items():
                counts[d] = counts.get(d, 0) + 1
                total[d] = total.get(d, 0.0) + s
        if not (self.must or self.filter or self.should or self.must_not):
            return _const(ctx.docs, self.boost)  # ES rewrites an empty bool to match_all
        if candidates is None:
            candidates = set(ctx.docs)
        if required > 0:
            candidates = {d for d in candidates if counts.get(d, 0) >= required}
        excluded: set[str] = set()
        for q in self.must_not:
            excluded |= set(q.run(ctx))
        return {d: f32(total.get(d, 0.0) * self.boost) for d in ctx.docs
                if d in candidates and d not in excluded}


@dataclass
class Range(Query):
    field: str = ""
    bounds: dict = dc_field(default_factory=dict)

    def _run(self, ctx: IndexContext) -> dict[str, float]:
        spec = ctx.spec(self.field)
        if spec is None:
            return {}
        ftype = spec.get("type")
        checks = []
        for op, raw in self.bounds.items():
            if raw is None:
                continue
            try:
                if ftype in DATE_TYPES:
                    bound: Any = parse_date(raw, round_up=op in ("lte", "gt"))
                elif ftype in NUMERIC_TYPES:
                    bound = float(to_number(raw, "double"))
                elif ftype in KEYWORD_TYPES or ftype in TEXT_TYPES:
                    bound = keyword_value(raw)
                else:
                    bound = raw
            except CoercionError as exc:
                raise query_shard_error(str(exc)) from None
            checks.append((op, bound))
        text = ftype in TEXT_TYPES

        def ok(value: Any) -> bool:
            for op, bound in checks:
                if op == "gt" and not value > bound:
                    return False
                if op == "gte" and not value >= bound:
                    return False
                if op == "lt" and not value < bound:
                    return False
                if op == "lte" and not value <= bound:
                    return False
            return True

        docs = []
        for d in ctx.docs:
            values = ctx.tokens(d, self.field) if text else ctx.values(d, self.field)
            if any(ok(v) for v in values):
                docs.append(d)
        return _const(docs, self.boost)


@dataclass
class Exists(Query):
    field: str = ""

    def _run(self, ctx: IndexContext) -> dict[str, float]:
        paths = ctx.resolve(self.field)
        if self.field in ctx.fields and ctx.fields[self.field].get("type") in ("object", "nested"):
            paths = [p for p in ctx.fields if p.startswith(self.field + ".")]
        docs = []
        for d in ctx.docs:
            for p in paths:
                spec = ctx.fields[p]
                if spec.get("type") in ("object", "nested"):
                    continue
                if spec.get("type") == "dense_vector":
                    if source_values(ctx.docs[d], p, raw=True):
                        docs.append(d)
                        break
                elif ctx.values(d, p) if spec.get("type") not in TEXT_TYPES else ctx.tokens(d, p):
                    docs.append(d)
                    break
        return _const(docs, self.boost)


@dataclass
class Ids(Query):
    values: list = dc_field(default_factory=list)

    def _run(self, ctx: IndexContext) -> dict[str, float]:
        return _id_matches(ctx, self.values, self.boost)


@dataclass
class Prefix(Query):
    field: str = ""
    value: str = ""
    case_insensitive: bool = False
    wildcard: bool = False

    def _run(self, ctx: IndexContext) -> dict[str, float]:
        if self.field == "_id":
            candidates = {d: [d] for d in ctx.docs}
        else:
            spec = ctx.spec(self.field)
            if spec is None or spec.get("type") not in KEYWORD_TYPES | TEXT_TYPES:
                return {}
            candidates = {d: ctx.tokens(d, self.field) for d in ctx.docs}
        want = self.value.lower() if self.case_insensitive else self.value
        docs = []
        for d, toks in candidates.items():
            for t in toks:
                t = t.lower() if self.case_insensitive else t
                if (fnmatch.fnmatchcase(t, want) if self.wildcard else t.startswith(want)):
                    docs.append(d)
                    break
        return _const(docs, self.boost)


@dataclass
class ConstantScore(Query):
    inner: Query | None = None

    def _run(self, ctx: IndexContext) -> dict[str, float]:
        assert self.inner is not None
        return _const(self.inner.run(ctx), self.boost)


@dataclass
class DisMax(Query):
    queries: list = dc_field(default_factory=list)
    tie_breaker: float = 0.0

    def _run(self, ctx: IndexContext) -> dict[str, float]:
        results = [q.run(ctx) for q in self.queries]
        out = {}
        for d in set().union(*results) if results else set():
            scores = [r[d] for r in results if d in r]
            best = max(scores)
            out[d] = f32((best + self.tie_breaker * (sum(scores) - best)) * self.boost)
        return out


@dataclass
class KnnQuery(Query):
    """The ``knn`` query clause; the search layer supplies the runner (it owns vector logic)."""

    spec: dict = dc_field(default_factory=dict)
    runner: Any = None

    def _run(self, ctx: IndexContext) -> dict[str, float]:
        assert self.runner is not None, "knn query needs a runner"
        return self.runner(self, ctx)


# ---------------------------------------------------------------------------------------------- script_score

#: The only scripts the test cluster runs: one vector function, optionally plus a constant -- exactly the
#: forms ``toolkit eval`` sends for exact search. Painless itself is NOT emulated (partial emulation).
_VECTOR_SCRIPT_RE = re.compile(
    r"^\s*(cosineSimilarity|dotProduct|l1norm|l2norm)\(\s*params\.(\w+)\s*,\s*(['\"])([^'\"]+)\3\s*\)"
    r"\s*(?:\+\s*(\d+(?:\.\d+)?))?\s*$")


def _script_runtime_error(reason: str) -> ShardError:
    # Painless wraps an exception thrown by a whitelisted method into ScriptException "runtime error"
    # (modules/lang-painless/.../PainlessScript.convertToScriptException) with the cause kept.
    return ShardError("script_exception", "runtime error", {"type": "illegal_argument_exception", "reason": reason})


@dataclass
class ScriptScore(Query):
    """``script_score`` with a vector function script, scored as Elasticsearch scores it.

    - ES: ``ScriptScoreQueryBuilder`` (server/src/main/java/org/elasticsearch/index/query/functionscore/) and
      ``ScriptScoreQuery`` (server/.../common/lucene/search/function/ScriptScoreQuery.java): the inner query
      selects the documents; each one's score is the script's double result cast to float, then times
      ``boost``; ``min_score`` drops documents below it; a negative (or NaN) script score fails the shard
      with "script_score script returned an invalid score [s] for doc [d]. Must be a non-negative score!".
    - Vector functions: ``VectorScoreScriptUtils`` (server/src/main/java/org/elasticsearch/script/): the
      query vector's dims are checked against the field's (``DenseVector.checkDimensions``: "The query
      vector has a different number of dimensions [q] than the document vectors [d]."), a document
      without a vector fails with "A document doesn't have a value for a vector field!";
      ``cosineSimilarity`` normalizes the query vector and returns the cosine (so ``+ 1.0`` keeps it
      non-negative), ``dotProduct`` the dot product, ``l1norm``/``l2norm`` the distances.
    - Partial emulation: Painless is not run. Only the forms ``FN(params.NAME, 'FIELD')`` and
      ``FN(params.NAME, 'FIELD') + CONSTANT`` are accepted; any other script fails the shard as a script
      that does not compile would (``script_exception`` "compile error"), its cause saying it is the test
      cluster's limit. The doc-index part of the invalid-score message is the document's position (guess:
      ES prints the Lucene doc id).
    """

    inner: Query | None = None
    function: str = ""
    param: str = ""
    field: str = ""
    constant: float = 0.0
    params: dict = dc_field(default_factory=dict)
    min_score: float | None = None

    def _vector_function(self, ctx: IndexContext) -> Any:
        spec = ctx.spec(self.field)
        if spec is None:
            raise _script_runtime_error(f"No field found for [{self.field}] in mapping")
        if spec.get("type") != "dense_vector":
            raise _script_runtime_error(f"Field [{self.field}] of type [{spec.get('type')}] does not support "
                                        f"vector functions")  # guess: the cast in VectorScoreScriptUtils fails
        if self.param not in self.params:
            raise _script_runtime_error(f"Missing parameter [{self.param}]")  # guess
        raw = self.params[self.param]
        if not isinstance(raw, list) or not all(isinstance(x, (int, float)) and not isinstance(x, bool)
                                                for x in raw):
            raise _script_runtime_error(f"[{self.param}] must be a list of numbers")  # guess
        query = [f32(x) for x in raw]
        dims = spec.get("dims")
        if dims is not None and int(dims) != len(query):
            raise _script_runtime_error(f"The query vector has a different number of dimensions [{len(query)}] "
                                        f"than the document vectors [{dims}].")
        if self.function == "cosineSimilarity":
            norm = math.sqrt(sum(x * x for x in query))
            query = [f32(x / norm) if norm else x for x in query]

        def score(doc: list[float]) -> float:
            if self.function == "cosineSimilarity":
                dn = math.sqrt(sum(x * x for x in doc))
                return sum(a * b for a, b in zip(query, doc, strict=True)) / dn if dn else 0.0
            if self.function == "dotProduct":
                return sum(a * b for a, b in zip(query, doc, strict=True))
            if self.function == "l1norm":
                return sum(abs(a - b) for a, b in zip(query, doc, strict=True))
            return math.sqrt(sum((a - b) ** 2 for a, b in zip(query, doc, strict=True)))

        return score

    def _run(self, ctx: IndexContext) -> dict[str, float]:
        assert self.inner is not None
        matched = self.inner.run(ctx)
        if not matched:
            return {}
        function = self._vector_function(ctx)
        order = {d: i for i, d in enumerate(ctx.docs)}
        out = {}
        for doc_id in matched:
            vector = vector_value(ctx.docs[doc_id], self.field)
            if vector is None:
                raise _script_runtime_error("A document doesn't have a value for a vector field!")
            value = f32(function(vector) + self.constant)
            if value < 0 or math.isnan(value):
                raise ShardError("illegal_argument_exception",
                                 f"script_score script returned an invalid score [{value}] for doc "
                                 f"[{order[doc_id]}]. Must be a non-negative score!")
            if self.min_score is not None and value < self.min_score:
                continue
            out[doc_id] = f32(value * self.boost)
        return out


# ---------------------------------------------------------------------------------------------- parsing

def _check_keys(qname: str, obj: dict, allowed: set[str]) -> None:
    for key in obj:
        if key not in allowed:
            raise parsing_error(f"[{qname}] query does not support [{key}]")


def _single_field(qname: str, body: Any) -> tuple[str, Any]:
    if not isinstance(body, dict) or not body:
        raise parsing_error(f"[{qname}] query malformed, no start_object after query name")
    fields = [k for k in body if k not in ("boost", "_name")]
    if len(fields) > 1:
        raise parsing_error(f"[{qname}] query doesn't support multiple fields, found [{fields[0]}] and "
                            f"[{fields[1]}]")
    if not fields:
        raise parsing_error(f"[{qname}] query requires a field")
    return fields[0], body[fields[0]]


def _common(obj: dict) -> dict:
    return {"boost": float(obj.get("boost", 1.0)), "name": obj.get("_name")}


def _as_list(value: Any) -> list:
    return value if isinstance(value, list) else [value]


KnnFactory = Any  # callable(spec_dict) -> KnnQuery; set by the search layer
_knn_factory: list[KnnFactory] = []


def parse_query(obj: Any) -> Query:
    """Parse one query object (``{"match": {...}}``) into a :class:`Query`; raises 400 ``ESError``.

    Example::

        q = parse_query({"bool": {"filter": [{"term": {"tag": "a"}}]}})
    """
    if obj is None or obj == {}:
        return MatchAll()
    if not isinstance(obj, dict):
        raise parsing_error("query malformed, must start with start_object")
    if len(obj) > 1:
        first = next(iter(obj))
        raise parsing_error(f"[{first}] malformed query, expected [END_OBJECT] but found [FIELD_NAME]")
    qname, body = next(iter(obj.items()))
    parser = _PARSERS.get(qname)
    if parser is None:
        raise ESError(400, "parsing_exception", f"unknown query [{qname}]",
                      caused_by={"type": "named_object_not_found_exception",
                                 "reason": f"[1:{10 + len(qname)}] unknown field [{qname}]"})
    return parser(body)


def _p_match_all(body: Any) -> Query:
    body = body or {}
    _check_keys("match_all", body, {"boost", "_name"})
    return MatchAll(**_common(body))


def _p_match_none(body: Any) -> Query:
    body = body or {}
    _check_keys("match_none", body, {"boost", "_name"})
    return MatchNone(**_common(body))


def _p_term(body: Any) -> Query:
    fname, spec = _single_field("term", body)
    if isinstance(spec, dict):
        _check_keys("term", spec, {"value", "boost", "_name", "case_insensitive"})
        if "value" not in spec:
            raise parsing_error("[term] query does not support [" + fname + "] without [value]")
        return Term(field=fname, value=spec["value"], case_insensitive=bool(spec.get("case_insensitive")),
                    **_common(spec))
    if isinstance(spec, list):
        raise parsing_error("[term] query does not support array of values")
    return Term(field=fname, value=spec, **_common(body))


def _p_terms(body: Any) -> Query:
    if not isinstance(body, dict):
        raise parsing_error("[terms] query malformed, no start_object after query name")
    fields = [k for k in body if k not in ("boost", "_name")]
    if len(fields) != 1:
        raise parsing_error("[terms] query does not support multiple fields" if fields
                            else "[terms] query requires a field")
    values = body[fields[0]]
    if not isinstance(values, list):
        raise parsing_error(f"[terms] query does not support [{fields[0]}]")
    return Terms(field=fields[0], values=values, **_common(body))


_MATCH_KEYS = {"query", "operator", "minimum_should_match", "boost", "_name", "analyzer", "fuzziness",
               "prefix_length", "max_expansions", "lenient", "zero_terms_query",
               "auto_generate_synonyms_phrase_query", "fuzzy_transpositions", "slop"}


def _p_match(body: Any, phrase: bool = False) -> Query:
    qname = "match_phrase" if phrase else "match"
    fname, spec = _single_field(qname, body)
    if isinstance(spec, dict):
        _check_keys(qname, spec, _MATCH_KEYS)
        if "query" not in spec:
            raise parsing_error("No text specified for text query")
        op = str(spec.get("operator", "or")).lower()
        if op not in ("or", "and"):
            raise ESError(400, "illegal_argument_exception", f"No enum constant for operator [{op}]")
        return Match(field=fname, text=spec["query"], operator=op, msm=spec.get("minimum_should_match"),
                     zero_terms_all=str(spec.get("zero_terms_query", "none")).lower() == "all", phrase=phrase,
                     **_common(spec))
    return Match(field=fname, text=spec, phrase=phrase)


def _p_multi_match(body: Any) -> Query:
    _check_keys("multi_match", body, {"query", "fields", "type", "operator", "minimum_should_match", "boost",
                                      "_name", "tie_breaker", "analyzer", "fuzziness", "lenient",
                                      "zero_terms_query", "slop", "prefix_length", "max_expansions"})
    if "query" not in body:
        raise parsing_error("[multi_match] requires query value")
    fields = body.get("fields", [])
    return MultiMatch(fields=_as_list(fields), text=body["query"], type=body.get("type", "best_fields"),
                      operator=str(body.get("operator", "or")).lower(), msm=body.get("minimum_should_match"),
                      tie_breaker=body.get("tie_breaker"), **_common(body))


def _p_bool(body: Any) -> Query:
    if not isinstance(body, dict):
        raise parsing_error("[bool] query malformed, no start_object after query name")
    _check_keys("bool", body, {"must", "should", "filter", "must_not", "minimum_should_match", "boost",
                               "_name", "adjust_pure_negative"})
    parts = {k: [parse_query(q) for q in _as_list(body.get(k, []))] for k in ("must", "should", "filter",
                                                                            "must_not")}
    return Bool(msm=body.get("minimum_should_match"), **parts, **_common(body))


_RANGE_KEYS = {"gt", "gte", "lt", "lte", "from", "to", "include_lower", "include_upper", "boost", "_name",
               "format", "time_zone", "relation"}


def _p_range(body: Any) -> Query:
    fname, spec = _single_field("range", body)
    if not isinstance(spec, dict):
        raise parsing_error(f"[range] query does not support [{fname}]")
    _check_keys("range", spec, _RANGE_KEYS)
    bounds = {k: spec[k] for k in ("gt", "gte", "lt", "lte") if k in spec}
    if "from" in spec:
        bounds["gte" if spec.get("include_lower", True) else "gt"] = spec["from"]
    if "to" in spec:
        bounds["lte" if spec.get("include_upper", True) else "lt"] = spec["to"]
    return Range(field=fname, bounds=bounds, **_common(spec))


def _p_exists(body: Any) -> Query:
    if not isinstance(body, dict) or "field" not in body:
        raise parsing_error("[exists] must be provided with a [field]")
    _check_keys("exists", body, {"field", "boost", "_name"})
    return Exists(field=body["field"], **_common(body))


def _p_ids(body: Any) -> Query:
    if not isinstance(body, dict):
        raise parsing_error("[ids] query malformed, no start_object after query name")
    _check_keys("ids", body, {"values", "boost", "_name", "type"})
    return Ids(values=_as_list(body.get("values", [])), **_common(body))


def _p_prefix(body: Any, qname: str = "prefix") -> Query:
    fname, spec = _single_field(qname, body)
    if isinstance(spec, dict):
        _check_keys(qname, spec, {"value", "boost", "_name", "case_insensitive", "rewrite", "wildcard"})
        value = spec.get("value", spec.get("wildcard"))
        return Prefix(field=fname, value=str(value), case_insensitive=bool(spec.get("case_insensitive")),
                      wildcard=qname == "wildcard", **_common(spec))
    return Prefix(field=fname, value=str(spec), wildcard=qname == "wildcard")


def _p_constant_score(body: Any) -> Query:
    if not isinstance(body, dict) or "filter" not in body:
        raise parsing_error("[constant_score] requires a 'filter' element")
    _check_keys("constant_score", body, {"filter", "boost", "_name"})
    return ConstantScore(inner=parse_query(body["filter"]), **_common(body))


def _p_dis_max(body: Any) -> Query:
    _check_keys("dis_max", body, {"queries", "tie_breaker", "boost", "_name"})
    return DisMax(queries=[parse_query(q) for q in _as_list(body.get("queries", []))],
                  tie_breaker=float(body.get("tie_breaker", 0.0)), **_common(body))


def _p_knn(body: Any) -> Query:
    if not _knn_factory:
        raise parsing_error("unknown query [knn]")
    return _knn_factory[0](body)


def _p_script_score(body: Any) -> Query:
    """``script_score`` as ``ScriptScoreQueryBuilder.PARSER`` reads it: ``query`` and ``script`` required
    (ConstructingObjectParser: "Required [query]" -- the exact wrapper is a guess), ``min_score``,
    ``boost``, ``_name``; unknown keys are ``[script_score] unknown field [x]``."""
    if not isinstance(body, dict):
        raise parsing_error("[script_score] query malformed, no start_object after query name")
    for key in body:
        if key not in ("query", "script", "min_score", "boost", "_name"):
            raise ESError(400, "x_content_parse_exception", f"[script_score] unknown field [{key}]")
    for key in ("query", "script"):
        if key not in body:
            raise ESError(400, "x_content_parse_exception", f"Required [{key}]")
    script = body["script"]
    if isinstance(script, str):
        script = {"source": script}
    if not isinstance(script, dict) or "source" not in script:
        raise ESError(400, "x_content_parse_exception", "[script_score] failed to parse field [script]",
                      caused_by={"type": "illegal_argument_exception",
                                 "reason": "the test cluster runs inline scripts ([source]) only"})
    lang = script.get("lang", "painless")
    match = _VECTOR_SCRIPT_RE.match(str(script["source"])) if lang == "painless" else None
    if match is None:
        # Compilation happens on the shard (ScriptScoreQueryBuilder.doToQuery -> context.compile).
        reason = ("the test cluster emulates only vector-function scripts such as "
                  "\"cosineSimilarity(params.query_vector, 'field') + 1.0\" (Painless is not emulated)")
        failure = ShardError("script_exception", "compile error",
                             {"type": "illegal_argument_exception", "reason": reason})
        return _Failing(error=failure)
    params = script.get("params") or {}
    min_score = body.get("min_score")
    return ScriptScore(inner=parse_query(body["query"]), function=match.group(1), param=match.group(2),
                       field=match.group(4), constant=float(match.group(5) or 0.0), params=dict(params),
                       min_score=None if min_score is None else float(min_score), **_common(body))


@dataclass
class _Failing(Query):
    """A query that fails on every shard with ``error`` (a script that does not compile)."""

    error: ShardError | None = None

    def _run(self, ctx: IndexContext) -> dict[str, float]:
        assert self.error is not None
        raise self.error


def _p_query_string(body: Any) -> Query:
    if not isinstance(body, dict) or "query" not in body:
        raise parsing_error("[query_string] must be provided with a [query]")
    fields = body.get("fields") or ([body["default_field"]] if "default_field" in body else ["*"])
    return parse_query_string(str(body["query"]), fields, str(body.get("default_operator", "or")).lower(),
                              **_common(body))


def parse_query_string(text: str, fields: list[str], default_operator: str = "or", boost: float = 1.0,
                       name: str | None = None) -> Query:
    """A small ``query_string`` subset: ``field:value`` clauses, bare words, AND/OR/NOT, +/- prefixes.

    Example::

        parse_query_string("title:car +color:red -used", ["*"])
    """
    must: list[Query] = []
    should: list[Query] = []
    must_not: list[Query] = []
    pending_op = None
    for raw in re.findall(r'(?:[^\s"]+:)?"[^"]*"|\S+', text):
        if raw in ("AND", "OR", "&&", "||"):
            pending_op = "and" if raw in ("AND", "&&") else "or"
            continue
        negate = raw.startswith("-") or raw == "NOT"
        if raw == "NOT":
            pending_op = "not"
            continue
        required = raw.startswith("+")
        token = raw.lstrip("+-")
        fname, sep, value = token.partition(":")
        value = value.strip('"') if sep else fname.strip('"')
        targets = [fname] if sep else fields
        if value == "*" and sep:
            clause: Query = Exists(field=fname)
        else:
            clause = MultiMatch(fields=targets, text=value, type="best_fields")
        if negate or pending_op == "not":
            must_not.append(clause)
        elif required or pending_op == "and" or default_operator == "and":
            must.append(clause)
        else:
            should.append(clause)
        pending_op = None
    if not (must or should or must_not):
        return MatchNone(boost=boost, name=name)
    return Bool(must=must, should=should, must_not=must_not, boost=boost, name=name)


_PARSERS: dict[str, Any] = {
    "match_all": _p_match_all,
    "match_none": _p_match_none,
    "term": _p_term,
    "terms": _p_terms,
    "match": _p_match,
    "match_phrase": lambda b: _p_match(b, phrase=True),
    "multi_match": _p_multi_match,
    "bool": _p_bool,
    "range": _p_range,
    "exists": _p_exists,
    "ids": _p_ids,
    "prefix": _p_prefix,
    "wildcard": lambda b: _p_prefix(b, "wildcard"),
    "constant_score": _p_constant_score,
    "dis_max": _p_dis_max,
    "knn": _p_knn,
    "query_string": _p_query_string,
    "script_score": _p_script_score,
    "simple_query_string": _p_query_string,
}
