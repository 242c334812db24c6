"""A body past its bound is refused before it is held: FastAPI reads a JSON body whole
before the route's permission check, so without a bound anyone could make the server hold
any amount of memory (or, for a form, fill its temporary disk)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from salud.api.input_guard import MAX_BODY, MAX_FORM

pytestmark = pytest.mark.db


def _stream(total: int, counter: list[int]) -> AsyncIterator[bytes]:
    async def chunks() -> AsyncIterator[bytes]:
        sent = 0
        while sent < total:
            piece = b" " * min(1 << 20, total - sent)
            sent += len(piece)
            counter[0] = sent
            yield piece

    return chunks()


async def test_a_declared_length_past_the_bound_is_refused_unread(
    anonymous: httpx.AsyncClient,
) -> None:
    for url, kind in (("/api/v1/persons", "application/json"), ("/fhir", "application/fhir+json")):
        answer = await anonymous.post(
            url, content=b"{" + b" " * MAX_BODY + b"}", headers={"Content-Type": kind}
        )
        assert answer.status_code == 413, (url, answer.text)
        if url == "/fhir":
            issue = answer.json()["issue"][0]
            assert (issue["code"], issue["expression"]) == ("too-long", ["body"])
        else:
            assert answer.json()["errors"][0]["field"] == "body"
            assert "32 MB" in answer.json()["detail"]
    # A page's form has the tighter bound, whoever sends it (no session here).
    form = await anonymous.post(
        "/modulo/estado", content=b"a=" + b"x" * MAX_FORM,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )  # fmt: skip
    assert form.status_code == 413
    assert form.headers["content-type"].startswith("text/html")  # a page: words, not JSON
    assert "pesa más de 8 MB" in form.text
    # The API's forms (the OAuth2 token endpoint) answer problem+json.
    token = await anonymous.post(
        "/api/v1/oauth/token", content=b"a=" + b"x" * MAX_FORM,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )  # fmt: skip
    assert token.status_code == 413
    assert token.json()["errors"][0]["field"] == "body"


async def test_a_body_without_a_length_is_read_no_further_than_the_bound(
    anonymous: httpx.AsyncClient,
) -> None:
    counter = [0]
    answer = await anonymous.post(
        "/api/v1/persons", content=_stream(4 * MAX_BODY, counter),
        headers={"Content-Type": "application/json"},
    )  # fmt: skip
    assert answer.status_code == 413, answer.text
    assert answer.json()["errors"][0]["field"] == "body"
    assert counter[0] <= MAX_BODY + 2 * (1 << 20)
    # Within the bound, a body is read as before.
    ok = await anonymous.post("/api/v1/persons", content=b"{}",
                              headers={"Content-Type": "application/json"})  # fmt: skip
    assert ok.status_code in (401, 422), ok.text
