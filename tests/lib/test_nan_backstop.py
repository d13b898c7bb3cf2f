"""Nothing can print or send NaN/Infinity: they are not JSON (Kibana and Elasticsearch reject them)."""

from __future__ import annotations

import pytest

from toolkit.devtools import Request, render, send
from toolkit.errors import ValidationError
from toolkit.search import SearchOptions, validate_options


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_render_refuses_non_finite_numbers(value: float) -> None:
    with pytest.raises(ValidationError, match="NaN or infinite"):
        render(Request("POST", "images/_search", body={"knn": {"similarity": value}}))


def test_send_refuses_them_before_the_client_serializes() -> None:
    class Client:
        def perform_request(self, *args: object, **kwargs: object) -> None:
            raise AssertionError("sent")

    with pytest.raises(ValidationError):
        send(Client(), Request("POST", "images/_search", body={"query": {"x": [1.0, float("nan")]}}))  # type: ignore[arg-type]


@pytest.mark.parametrize("field,flag", [("min_similarity", "--min-similarity"), ("min_score", "--min-score"),
                                        ("caption_weight", "--caption-weight")])
def test_library_callers_get_the_flag_named(field: str, flag: str) -> None:
    with pytest.raises(ValidationError, match=flag):
        validate_options(SearchOptions(**{field: float("nan")}))
