"""The production app plus one benchmark-only route: the person read WITHOUT authorization
and audit (`/bench/bare/{curp}`), so that bench.http_read can compare both over HTTP in one
run. Never used outside bench/."""

from __future__ import annotations

from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from salud.app import create_app as create_production_app
from salud.identity import repository, service


async def bare_read(request: Request) -> Response:
    """What the production read does (api.persons.read_person_fast → service.get_json), but
    the bearer token, the permission and care checks and the audit entry: same CURP check,
    same query, same JSON builder, same headers."""
    curp = service.check_curp(request.path_params["curp"])
    found = await repository.read_by_curp(request.app.state.reader, curp)
    if found is None:
        return Response(status_code=404)
    body, version = service.read_json(*found)
    return Response(body, media_type="application/json", headers={"ETag": f'W/"{version}"'})


def create_app() -> FastAPI:
    app = create_production_app()
    app.router.routes.insert(0, Route("/bench/bare/{curp}", bare_read, methods=["GET"]))
    return app
