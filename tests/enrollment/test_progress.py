"""The progress dashboard: its figures follow what was done (enrollments, bookings,
cancellations, a reschedule, a lapsed booking, a print batch and a delivery), the CSV says
the same as the JSON, it needs the permission, and the page draws its charts."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import re
from collections import Counter, defaultdict
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pyotp
import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from typer.testing import CliRunner

from salud.access import repository as accounts
from salud.access import service as access
from salud.access.models import AuditEvent
from salud.access.permissions import Role
from salud.access.schemas import AccountCreate
from salud.app import create_app
from salud.cli.main import app as cli
from salud.config import Settings
from salud.enrollment import progress
from salud.enrollment import repository as enrollment_repository
from salud.enrollment.models import Appointment, Enrollment, PrintBatch, ProgressSnapshot
from salud.kit.clock import today_mx, utcnow
from tests.conftest import TokenFor, keyring_of
from tests.enrollment.conftest import MODULE, Drive, E
from tests.enrollment.test_enrollment import adult_documents, capture, enroll_adult, start
from tests.factories.persons import person_doc

pytestmark = pytest.mark.db

P = f"{E}/progress"
CDMX_MODULE = "MR-09-0007"
PASSWORD = "Prueba-Segura-2026"


# --- what INEGI says, read here independently of the code under test -------------------------


def inegi_rows(shared_data: Path) -> list[dict[str, str]]:
    with (shared_data / "inegi" / "municipios_inegi.csv").open(encoding="utf-8-sig") as fh:
        return list(csv.DictReader(fh))


def population_of(rows: list[dict[str, str]], state: str, municipality: str | None = None) -> int:
    return sum(
        int(r["poblacion_total"])
        for r in rows
        if r["cve_entidad"] == state and municipality in (None, r["cve_municipio"])
    )


# --- actions -------------------------------------------------------------------------------


async def cdmx_module(c: httpx.AsyncClient, token_for: TokenFor) -> Drive:
    """A second module, in Mexico City, open every day of the week (so a same-day booking
    works whatever day the test runs)."""
    supervisor = token_for(Role.SUPERVISOR, username="supervisor.cdmx", module=CDMX_MODULE)
    operator = token_for(Role.REGISTRATION_OPERATOR, username="operador.cdmx", module=CDMX_MODULE)
    made = await c.post(
        f"{E}/modules",
        headers=supervisor,
        json={"code": CDMX_MODULE, "name": "Módulo Centro Histórico", "state": "09",
              "municipality": "015", "address": "Av. 5 de Mayo 10, Centro, Cuauhtémoc",
              "weekdays": "1234567", "daily_capacity": 80},
    )  # fmt: skip
    assert made.status_code == 201, made.text
    opened = await c.post(
        f"{E}/modules/{CDMX_MODULE}/status", headers=supervisor, json={"status": "open"}
    )
    assert opened.status_code == 200, opened.text
    return Drive(CDMX_MODULE, supervisor, operator)


async def book(c: httpx.AsyncClient, curp: str, module: str, day: date) -> str:
    made = await c.post(
        f"{E}/appointments", json={"curp": curp, "module_code": module, "day": day.isoformat()}
    )
    assert made.status_code == 201, made.text
    folio: str = made.json()["folio"]
    return folio


async def enroll_with_appointment(c: httpx.AsyncClient, drive: Drive, seed: int) -> dict[str, Any]:
    """Book today at the module, come, and be enrolled: the appointment is kept."""
    doc = person_doc()
    await book(c, doc["curp"], drive.module, today_mx())
    return await enroll_adult(c, drive, seed, doc)


class Expected:
    """The figures, counted as the actions happen."""

    def __init__(self) -> None:
        self.enrolled: Counter[tuple[str, str]] = Counter()  # (state, municipality) of address
        self.appointments: defaultdict[str, Counter[str]] = defaultdict(Counter)  # module state
        self.cards: defaultdict[str, Counter[str]] = defaultdict(Counter)  # module state
        self.completed: Counter[str] = Counter()  # module code, today
        self.overdue: Counter[str] = Counter()  # print batches past their due day, by state

    def enrolled_person(self, module: str, module_state: str) -> None:
        self.enrolled[("13", "048")] += 1  # person_doc's address: Pachuca de Soto, Hidalgo
        self.completed[module] += 1
        self.cards[module_state]["to_print"] += 1

    def booked(self, state: str) -> None:
        self.appointments[state]["booked"] += 1
        self.appointments[state]["pending"] += 1

    def moved(self, state: str, status: str) -> None:
        self.appointments[state]["pending"] -= 1
        self.appointments[state][status] += 1

    def cards_moved(self, state: str, source: str, target: str | None, n: int = 1) -> None:
        self.cards[state][source] -= n
        if target:
            self.cards[state][target] += n


async def act(
    c: httpx.AsyncClient,
    drive: Drive,
    cdmx: Drive,
    sessions: async_sessionmaker[AsyncSession],
) -> Expected:
    x = Expected()
    for seed in (21, 22):
        await enroll_adult(c, drive, seed)
        x.enrolled_person(MODULE, "13")
    # Booked today in Mexico City, kept, enrolled there: the person's address is in Hidalgo.
    x.booked("09")
    await enroll_with_appointment(c, cdmx, 23)
    x.moved("09", "kept")
    x.enrolled_person(CDMX_MODULE, "09")

    # Started and not finished: not enrolled, no throughput, no card.
    unfinished = await start(c, drive, person_doc())
    assert unfinished.status_code == 201, unfinished.text

    later = drive.next_open_day()
    curps = [person_doc()["curp"] for _ in range(4)]
    folios = []
    for curp in curps:
        folios.append(await book(c, curp, MODULE, later))
        x.booked("13")
    cancelled = await c.post(f"{E}/appointments/{folios[0]}/cancel", json={"curp": curps[0]})
    assert cancelled.status_code == 200, cancelled.text
    x.moved("13", "cancelled")
    moved = await c.post(
        f"{E}/appointments/{folios[1]}/reschedule",
        json={"curp": curps[1], "module_code": CDMX_MODULE, "day": later.isoformat()},
    )
    assert moved.status_code == 201, moved.text
    x.moved("13", "cancelled")
    x.booked("09")
    # Time passes for one booking: its day is over and nobody came.
    async with sessions() as s, s.begin():
        await s.execute(
            update(Appointment)
            .where(Appointment.folio == folios[2])
            .values(day=today_mx() - timedelta(days=1))
        )
    x.moved("13", "no_show")

    # Hidalgo's cards go through a batch to the module; one is handed over.
    op = drive.operator
    made = await c.post(f"{E}/print-batches", json={"module_code": MODULE}, headers=op)
    assert made.status_code == 201, made.text
    batch = made.json()
    code = batch["code"]
    assert (await c.post(f"{E}/print-batches/{code}/print-file", headers=op)).status_code == 200
    x.cards_moved("13", "to_print", "printed", batch["card_count"])
    for step in ("shipped", "received"):
        went = await c.post(f"{E}/print-batches/{code}/status", json={"status": step}, headers=op)
        assert went.status_code == 200, went.text
    x.cards_moved("13", "printed", "ready_for_pickup", batch["card_count"])
    handed = await c.post(
        f"{E}/cards/{batch['cards'][0]['credential_id']}/delivery",
        json={"identity_check": "photo_id"},
        headers=op,
    )
    assert handed.status_code == 200, handed.text
    x.cards_moved("13", "ready_for_pickup", None)

    # Mexico City's batch is made and never arrives: past its due day it is overdue.
    late = await c.post(f"{E}/print-batches", json={"module_code": CDMX_MODULE},
                        headers=cdmx.operator)  # fmt: skip
    assert late.status_code == 201, late.text
    async with sessions() as s, s.begin():
        await s.execute(
            update(PrintBatch)
            .where(PrintBatch.code == late.json()["code"])
            .values(due_on=today_mx() - timedelta(days=1))
        )
    x.overdue["09"] += 1
    return x


# --- tests ---------------------------------------------------------------------------------


APPOINTMENT_KEYS = ("booked", "pending", "kept", "cancelled", "no_show")
CARD_KEYS = ("to_print", "printed", "ready_for_pickup")


def check_state(row: dict[str, Any], x: Expected, state: str, people: int) -> None:
    enrolled = sum(n for (s, _), n in x.enrolled.items() if s == state)
    assert (row["population"], row["enrolled"]) == (people, enrolled), state
    assert row["coverage_pct"] == pytest.approx(100 * enrolled / people, abs=5e-7)
    assert {k: row["appointments"][k] for k in APPOINTMENT_KEYS} == {
        k: x.appointments[state][k] for k in APPOINTMENT_KEYS
    }, state
    assert {k: row["cards"][k] for k in CARD_KEYS} == {k: x.cards[state][k] for k in CARD_KEYS}
    assert row["cards"]["waiting"] == sum(x.cards[state][k] for k in CARD_KEYS)
    assert row["cards"]["overdue_batches"] == x.overdue[state], state
    a = row["appointments"]
    assert a["booked"] == a["pending"] + a["kept"] + a["cancelled"] + a["no_show"]


async def test_the_figures_follow_what_was_done(
    anonymous: httpx.AsyncClient,
    drive: Drive,
    signing_key: str,
    token_for: TokenFor,
    sessions: async_sessionmaker[AsyncSession],
    shared_data: Path,
) -> None:
    cdmx = await cdmx_module(anonymous, token_for)
    x = await act(anonymous, drive, cdmx, sessions)
    rows = inegi_rows(shared_data)
    ministry = token_for(Role.INSTITUTION_ADMIN)

    answer = await anonymous.get(P, headers=ministry)
    assert answer.status_code == 200, answer.text
    report = answer.json()
    assert report["municipalities"] is None
    keys = sorted({r["cve_entidad"] for r in rows})
    assert [s["key"] for s in report["states"]] == keys
    assert len(keys) == 32
    for row in report["states"]:
        check_state(row, x, row["key"], population_of(rows, row["key"]))
    # Enrolled at a module in Mexico City, counted where they live (Hidalgo).
    by_key = {s["key"]: s for s in report["states"]}
    assert by_key["09"]["enrolled"] == 0
    assert by_key["09"]["appointments"]["kept"] == 1
    national = report["national"]
    assert national["population"] == sum(int(r["poblacion_total"]) for r in rows)
    assert national["enrolled"] == sum(x.enrolled.values())
    assert report["enrolled_without_address"] == 0
    for k in APPOINTMENT_KEYS:
        assert national["appointments"][k] == sum(c[k] for c in x.appointments.values())
    for k in CARD_KEYS:
        assert national["cards"][k] == sum(c[k] for c in x.cards.values())
    assert national["cards"]["overdue_batches"] == sum(x.overdue.values()) == 1

    hidalgo = (await anonymous.get(P, params={"state": "13"}, headers=ministry)).json()
    towns = {m["key"]: m for m in hidalgo["municipalities"]}
    assert set(towns) == {r["cve_municipio"] for r in rows if r["cve_entidad"] == "13"}
    for key, town in towns.items():
        people = population_of(rows, "13", key)
        assert (town["population"], town["enrolled"]) == (people, x.enrolled[("13", key)])
    assert towns["048"]["name"] == "Pachuca de Soto"
    assert towns["048"]["enrolled"] == 3

    flow = await anonymous.get(f"{P}/modules", params={"days": 7}, headers=ministry)
    assert flow.status_code == 200, flow.text
    today = today_mx()
    modules = {m["code"]: m for m in flow.json()["modules"]}
    assert set(modules) == {MODULE, CDMX_MODULE}
    for code, m in modules.items():
        assert [d["day"] for d in m["days"]] == [
            (today - timedelta(days=6 - i)).isoformat() for i in range(7)
        ]
        assert m["days"][-1]["completed"] == x.completed[code]
        assert sum(d["completed"] for d in m["days"]) == m["total"] == x.completed[code]
    only_cdmx = await anonymous.get(f"{P}/modules", params={"state": "09"}, headers=ministry)
    assert [m["code"] for m in only_cdmx.json()["modules"]] == [CDMX_MODULE]

    for url in (P, f"{P}/modules", f"{P}/modules.csv"):  # the same check on every view
        for params, field in (({"state": "33"}, "state"), ({"state": "1"}, "state"),
                              ({"state": "00"}, "state")):  # fmt: skip
            bad = await anonymous.get(url, params=params, headers=ministry)
            assert bad.status_code == 422, (url, params)
            assert field in bad.text
    for days in (0, 91):
        bad = await anonymous.get(f"{P}/modules", params={"days": days}, headers=ministry)
        assert bad.status_code == 422, days


BOM = b"\xef\xbb\xbf"  # UTF-8's byte-order mark: Excel reads the file as UTF-8 with it


def parse_csv(answer: httpx.Response) -> list[dict[str, str]]:
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "text/csv; charset=utf-8"
    assert answer.headers["content-disposition"].startswith("attachment;")
    assert answer.content.startswith(BOM + b"cve_")  # one mark, then the header row
    text = answer.content[len(BOM) :].decode("utf-8")
    return list(csv.DictReader(io.StringIO(text, newline="")))


async def test_the_csv_says_what_the_json_says(
    anonymous: httpx.AsyncClient, drive: Drive, signing_key: str, token_for: TokenFor
) -> None:
    await enroll_adult(anonymous, drive, 31)
    await book(anonymous, person_doc()["curp"], MODULE, drive.next_open_day())
    boss = drive.supervisor

    report = (await anonymous.get(P, headers=boss)).json()
    table = parse_csv(await anonymous.get(f"{P}.csv", headers=boss))
    assert list(table[0]) == [
        "cve_entidad", "nom_entidad", "poblacion_total", "personas_credencializadas",
        "cobertura_pct", "citas_agendadas", "citas_por_atender", "citas_cumplidas",
        "citas_canceladas", "citas_no_asistidas", "tarjetas_por_imprimir", "tarjetas_impresas",
        "tarjetas_para_entrega", "tarjetas_en_espera", "lotes_atrasados",
        "personas_credencializadas_sin_municipio",
    ]  # fmt: skip
    assert len(table) == 1 + len(report["states"])
    for line, row in zip(table, [report["national"], *report["states"]], strict=True):
        a, c = row["appointments"], row["cards"]
        assert line == {
            "cve_entidad": row["key"], "nom_entidad": row["name"],
            "poblacion_total": str(row["population"]),
            "personas_credencializadas": str(row["enrolled"]),
            "cobertura_pct": f"{row['coverage_pct']:.6f}",
            "citas_agendadas": str(a["booked"]), "citas_por_atender": str(a["pending"]),
            "citas_cumplidas": str(a["kept"]), "citas_canceladas": str(a["cancelled"]),
            "citas_no_asistidas": str(a["no_show"]), "tarjetas_por_imprimir": str(c["to_print"]),
            "tarjetas_impresas": str(c["printed"]),
            "tarjetas_para_entrega": str(c["ready_for_pickup"]),
            "tarjetas_en_espera": str(c["waiting"]),
            "lotes_atrasados": str(c["overdue_batches"]),
            "personas_credencializadas_sin_municipio": str(row["enrolled_without_municipality"]),
        }  # fmt: skip
        assert float(line["cobertura_pct"]) == pytest.approx(row["coverage_pct"], abs=1e-12)
    hidalgo = next(line for line in table if line["cve_entidad"] == "13")
    assert hidalgo["nom_entidad"] == "Hidalgo"
    assert (hidalgo["personas_credencializadas"], hidalgo["citas_por_atender"]) == ("1", "1")
    assert hidalgo["tarjetas_por_imprimir"] == "1"

    towns_json = (await anonymous.get(P, params={"state": "13"}, headers=boss)).json()
    towns = parse_csv(await anonymous.get(f"{P}.csv", params={"state": "13"}, headers=boss))
    assert [(t["cve_municipio"], t["nom_municipio"], int(t["poblacion_total"]),
             int(t["personas_credencializadas"]), float(t["cobertura_pct"]))
            for t in towns[:-1]] == [
        (m["key"], m["name"], m["population"], m["enrolled"], m["coverage_pct"])
        for m in towns_json["municipalities"]
    ]  # fmt: skip
    assert {t["cve_entidad"] for t in towns} == {"13"}
    assert towns[-1] == {  # those with the state and no municipality: none here
        "cve_entidad": "13", "nom_entidad": "Hidalgo", "cve_municipio": "",
        "nom_municipio": "Sin municipio en el domicilio", "poblacion_total": "",
        "personas_credencializadas": "0", "cobertura_pct": "",
    }  # fmt: skip

    flow = (await anonymous.get(f"{P}/modules", params={"days": 3}, headers=boss)).json()
    lines = parse_csv(await anonymous.get(f"{P}/modules.csv", params={"days": 3}, headers=boss))
    assert [(r["cve_modulo"], r["fecha"], int(r["registros_concluidos"])) for r in lines] == [
        (m["code"], d["day"], d["completed"]) for m in flow["modules"] for d in m["days"]
    ]
    assert lines[-1] == {
        "cve_modulo": MODULE, "nom_modulo": "Módulo Centro de Salud Pachuca",
        "cve_entidad": "13", "cve_municipio": "048", "estado_modulo": "open",
        "capacidad_diaria": "120", "fecha": today_mx().isoformat(), "registros_concluidos": "1",
    }  # fmt: skip


async def test_only_roles_with_the_permission_see_it_and_each_read_is_audited(
    anonymous: httpx.AsyncClient,
    token_for: TokenFor,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    urls = (P, f"{P}.csv", f"{P}/modules", f"{P}/modules.csv")
    for url in urls:
        assert (await anonymous.get(url)).status_code == 401, url
        for role in (Role.REGISTRATION_OPERATOR, Role.VERIFIER, Role.CITIZEN, Role.AUDITOR):
            refused = await anonymous.get(url, headers=token_for(role, curp="X" * 18))
            assert refused.status_code == 403, (url, role)
            assert refused.headers["content-type"] == "application/problem+json"
        for role in (Role.SUPERVISOR, Role.INSTITUTION_ADMIN):
            assert (await anonymous.get(url, headers=token_for(role))).status_code == 200
    async with sessions() as s:
        rows = (
            await s.execute(
                select(AuditEvent.role, AuditEvent.outcome, AuditEvent.person_curp).where(
                    AuditEvent.action == "enrollment:progress:read"
                )
            )
        ).all()
    outcomes = Counter((role, outcome) for role, outcome, _ in rows)
    assert outcomes == {
        **{(r.value, "denied"): len(urls) for r in (Role.REGISTRATION_OPERATOR, Role.VERIFIER,
                                                     Role.CITIZEN, Role.AUDITOR)},
        (Role.SUPERVISOR.value, "success"): len(urls),
        (Role.INSTITUTION_ADMIN.value, "success"): len(urls),
    }  # fmt: skip
    assert {curp for _, _, curp in rows} == {None}  # nothing about a person


async def sign_in_supervisor(
    c: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession], settings: Settings
) -> httpx.Response:
    ring = keyring_of(settings)
    async with sessions() as session, session.begin():
        await access.create_account(
            session,
            AccountCreate(username="supervisora.avance", display_name="Supervisora",
                          role=Role.SUPERVISOR, password=PASSWORD, module_code=MODULE),
            ring,
        )  # fmt: skip
        account = await accounts.by_username(session, "supervisora.avance")
        assert account is not None
        secret = access.totp_secret(account, ring)
    assert secret is not None
    form = await c.get("/entrar", params={"next": "/avance"})
    token = re.search(r'name="csrf" value="([^"]+)"', form.text)
    assert token is not None
    return await c.post(
        "/entrar",
        data={"username": "supervisora.avance", "password": PASSWORD,
              "totp": pyotp.TOTP(secret).now(), "next": "/avance", "csrf": token.group(1)},
    )  # fmt: skip


async def test_the_page_draws_the_charts_for_a_signed_in_supervisor(
    anonymous: httpx.AsyncClient,
    drive: Drive,
    signing_key: str,
    token_for: TokenFor,
    sessions: async_sessionmaker[AsyncSession],
    settings: Settings,
) -> None:
    await enroll_adult(anonymous, drive, 41)
    away = await anonymous.get("/avance")
    assert away.status_code == 303
    assert away.headers["location"] == "/entrar?next=/avance"

    signed = await sign_in_supervisor(anonymous, sessions, settings)
    assert signed.status_code == 303, signed.text
    assert signed.headers["location"] == "/avance"
    page = await anonymous.get("/avance")
    assert page.status_code == 200, page.text
    html = page.text
    assert "Avance de la credencialización" in html
    assert re.search(r"Cifras al \d\d/\d\d/\d{4} \d\d:\d\d", html)  # when they were counted
    assert html.count("<svg") == 2
    # The charts need no script (the one every page has forgets saved cards on signing out),
    assert re.findall(r"<script[^>]*>", html) == ['<script src="/static/signout.js" defer>']
    assert "style=" not in html  # and no inline style (the CSP allows neither)
    # One bar per state, Hidalgo's with its coverage in the tooltip; the module's column today.
    coverage_chart, module_chart = (part.split("</svg>")[0] for part in html.split("<svg")[1:])
    assert coverage_chart.count('class="chart-bar"') == 32
    assert module_chart.count('class="chart-bar"') == 14  # one module, 14 days
    widths = [float(w) for w in re.findall(r'class="chart-bar"[^>]* width="([\d.]+)"', html)]
    drawn = [i for i, w in enumerate(widths[:32]) if w > 0]
    assert drawn == [12]  # Hidalgo (13), the only state with someone enrolled
    heights = [
        float(h) for h in re.findall(r'class="chart-bar"[^>]* height="([\d.]+)"', module_chart)
    ]
    assert [h > 0 for h in heights] == [False] * 13 + [True]  # today only
    assert re.search(r"<title>Hidalgo: 1 de [\d,]+ \(", html)
    assert f"<title>{MODULE}, {today_mx().strftime('%d/%m')}: 1</title>" in html
    assert 'href="/avance/entidades.csv"' in html

    towns = await anonymous.get("/avance", params={"state": "13", "days": 7})
    assert towns.status_code == 200
    assert "Pachuca de Soto" in towns.text
    assert "<svg" in towns.text
    assert "selected>Hidalgo</option>" in towns.text
    download = await anonymous.get("/avance/entidades.csv", params={"state": "13"})
    table = parse_csv(download)
    assert next(t for t in table if t["cve_municipio"] == "048")["personas_credencializadas"] == "1"
    modules = parse_csv(await anonymous.get("/avance/modulos.csv", params={"days": 2}))
    assert [r["registros_concluidos"] for r in modules] == ["0", "1"]
    whole_country = await anonymous.get("/avance", params={"state": ""})
    assert whole_country.status_code == 200

    # A role without the permission sees the refusal page (and the attempt is audited).
    anonymous.cookies.clear()
    verifier = token_for(Role.VERIFIER)["Authorization"].removeprefix("Bearer ")
    anonymous.cookies.set("salud_session", verifier)
    refused = await anonymous.get("/avance")
    assert refused.status_code == 403
    assert "<svg" not in refused.text
    assert (await anonymous.get("/avance/entidades.csv")).status_code == 403


# --- snapshots: the figures the server counts in the background ------------------------------


def _counts(f: progress.Figures) -> dict[str, Any]:
    """A snapshot's counts, order aside (what must equal a live count)."""
    doc = f.to_json()
    return {k: sorted(map(str, v)) if isinstance(v, list) else v for k, v in doc.items()}


_KEYS = st.one_of(st.none(), st.text("0123456789", min_size=2, max_size=3))


@given(
    enrolled=st.dictionaries(st.tuples(_KEYS, _KEYS), st.integers(0, 10**9), max_size=5),
    appointments=st.dictionaries(
        st.tuples(st.sampled_from(["09", "13"]), st.sampled_from(["booked", "kept"])),
        st.integers(0, 10**9),
    ),
    completed=st.dictionaries(
        st.tuples(st.integers(1, 2**40), st.dates()), st.integers(0, 10**6), max_size=5
    ),
)
def test_a_snapshot_keeps_every_count_through_json(
    enrolled: dict[tuple[str | None, str | None], int],
    appointments: dict[tuple[str, str], int],
    completed: dict[tuple[int, date], int],
) -> None:
    figures = progress.Figures(
        computed_at=datetime(2026, 12, 1, 17, 0, tzinfo=UTC), day=date(2026, 12, 1),
        enrolled=enrolled, appointments=appointments, lapsed={"09": 2}, cards={("13", "issued"): 1},
        completed=completed, overdue={"13": 3},
    )  # fmt: skip
    stored = json.loads(json.dumps(figures.to_json()))  # as the JSON column gives it back
    assert progress.Figures.from_json(figures.computed_at, stored) == figures


async def test_the_dashboard_reads_the_latest_snapshot_which_equals_a_live_count(
    anonymous: httpx.AsyncClient,
    drive: Drive,
    signing_key: str,
    settings: Settings,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    await enroll_adult(anonymous, drive, 41)
    async with sessions() as session:
        live = await progress.compute(session)
    taken = await progress.refresh(sessions)
    assert taken is not None
    assert _counts(taken) == _counts(live)
    assert await progress.refresh(sessions, unless_newer_than=timedelta(minutes=5)) is None

    boss = drive.supervisor
    snapshotting = create_app(settings.model_copy(update={"progress_refresh_seconds": 3600}))
    async with snapshotting.router.lifespan_context(snapshotting):
        transport = httpx.ASGITransport(app=snapshotting)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
            first = (await c.get(P, headers=boss)).json()
            assert first["computed_at"] == taken.computed_at.isoformat().replace("+00:00", "Z")
            flow = (await c.get(f"{P}/modules", headers=boss)).json()
            await enroll_adult(anonymous, drive, 42)
            # Until the next snapshot, the dashboard shows the figures as they were counted,
            # and says when; a request that counts sees the new enrollment.
            again = (await c.get(P, headers=boss)).json()
            assert again["national"]["enrolled"] == first["national"]["enrolled"]
            assert again["computed_at"] == first["computed_at"]
            counted = (await anonymous.get(P, headers=boss)).json()
            assert counted["national"]["enrolled"] == first["national"]["enrolled"] + 1
            await progress.refresh(sessions)
            fresh = (await c.get(P, headers=boss)).json()
            assert fresh["national"]["enrolled"] == counted["national"]["enrolled"]
            assert fresh["computed_at"] > first["computed_at"]
            fresh_flow = (await c.get(f"{P}/modules", headers=boss)).json()
            totals = {m["code"]: m["total"] for m in fresh_flow["modules"]}
            before = {m["code"]: m["total"] for m in flow["modules"]}
            assert totals[drive.module] == before[drive.module] + 1
    async with sessions() as session:
        kept = (await session.execute(select(func.count()).select_from(ProgressSnapshot))).scalar()
    assert kept is not None
    assert kept <= progress.KEEP


async def test_the_server_takes_snapshots_in_the_background(
    settings: Settings, sessions: async_sessionmaker[AsyncSession]
) -> None:
    async with sessions() as session:
        await session.execute(delete(ProgressSnapshot))
        await session.commit()
    app = create_app(settings.model_copy(update={"progress_refresh_seconds": 3600}))
    async with app.router.lifespan_context(app):
        for _ in range(200):
            async with sessions() as session:
                if await enrollment_repository.latest_snapshot(session) is not None:
                    break
            await asyncio.sleep(0.02)
        else:
            raise AssertionError("no snapshot was taken")


async def test_the_command_takes_a_snapshot(
    anonymous: httpx.AsyncClient, drive: Drive, signing_key: str, cli_env: CliRunner,
    sessions: async_sessionmaker[AsyncSession],
) -> None:  # fmt: skip
    await enroll_adult(anonymous, drive, 43)
    result = await asyncio.to_thread(cli_env.invoke, cli, ["enrollment", "progress-snapshot"])
    assert result.exit_code == 0, result.output
    async with sessions() as session:
        latest = await enrollment_repository.latest_snapshot(session)
        live = await progress.compute(session)
    assert latest is not None
    enrolled = sum(n for _, _, n in latest.figures["enrolled"])
    assert enrolled == sum(live.enrolled.values()) >= 1
    assert f"{enrolled} personas credencializadas" in result.output


@pytest.mark.postgresql
async def test_one_process_counts_a_snapshot_at_a_time(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    """Server processes started together would all count every period: the one that holds
    the lock counts, the others skip their turn."""
    async with sessions() as other, other.begin():
        assert await enrollment_repository.try_refresh_lock(other)  # another process counting
        assert await progress.refresh(sessions) is None
    assert await progress.refresh(sessions) is not None


# --- what the figures rest on ---------------------------------------------------------------


async def test_a_walk_in_leaves_a_lapsed_booking_a_no_show_and_frees_a_later_one(
    anonymous: httpx.AsyncClient,
    drive: Drive,
    signing_key: str,
    token_for: TokenFor,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    """At completion a booking still held for today or a later day is cancelled (its place
    goes back to the others); one whose day passed stays a no-show, as the figures say."""
    cdmx = await cdmx_module(anonymous, token_for)
    ministry = token_for(Role.INSTITUTION_ADMIN)
    missed, today_elsewhere, later = person_doc(), person_doc(), person_doc()
    lapsed = await book(anonymous, missed["curp"], MODULE, drive.next_open_day())
    async with sessions() as s, s.begin():
        await s.execute(
            update(Appointment)
            .where(Appointment.folio == lapsed)
            .values(day=today_mx() - timedelta(days=3))
        )
    elsewhere = await book(anonymous, today_elsewhere["curp"], CDMX_MODULE, today_mx())
    coming = await book(anonymous, later["curp"], CDMX_MODULE, drive.next_open_day())
    before = (await anonymous.get(P, headers=ministry)).json()["national"]["appointments"]
    assert (before["no_show"], before["pending"], before["cancelled"]) == (1, 2, 0)

    for seed, doc in ((51, missed), (52, today_elsewhere), (53, later)):  # walk-ins here
        await enroll_adult(anonymous, drive, seed, doc)

    after = (await anonymous.get(P, headers=ministry)).json()["national"]["appointments"]
    assert after == {"booked": 3, "pending": 0, "kept": 0, "cancelled": 2, "no_show": 1}
    async with sessions() as s:
        status = dict((await s.execute(select(Appointment.folio, Appointment.status))).all())
    assert status == {lapsed: "booked", elsewhere: "cancelled", coming: "cancelled"}
    found = await anonymous.get(
        f"{E}/modules/{cdmx.module}/availability", params={"curp": person_doc()["curp"]}
    )
    taken = {d["day"]: d["booked"] for d in found.json()["days"]}
    assert taken[today_mx().isoformat()] == 0  # both places went back
    assert taken[drive.next_open_day().isoformat()] == 0


async def test_a_booking_for_the_day_the_enrollment_began_is_no_no_show(
    anonymous: httpx.AsyncClient,
    drive: Drive,
    signing_key: str,
    token_for: TokenFor,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    """A person who walked in on day D while holding a booking elsewhere for D, and came back
    the next day to finish (a missing document, a review), did not miss that booking: it is
    cancelled at completion, as if they had finished on D."""
    await cdmx_module(anonymous, token_for)
    doc = person_doc()
    held = await book(anonymous, doc["curp"], CDMX_MODULE, today_mx())
    started = await start(anonymous, drive, doc)
    assert started.status_code == 201, started.text
    folio = started.json()["folio"]
    yesterday = today_mx() - timedelta(days=1)
    async with sessions() as s, s.begin():  # the visit began yesterday, the booking was for it
        await s.execute(update(Appointment).where(Appointment.folio == held).values(day=yesterday))
        await s.execute(
            update(Enrollment).where(Enrollment.folio == folio)
            .values(started_at=utcnow() - timedelta(days=1))
        )  # fmt: skip
    docs = await anonymous.put(
        f"{E}/enrollments/{folio}/documents", json=adult_documents(), headers=drive.operator
    )
    assert docs.status_code == 200, docs.text
    await capture(anonymous, drive, folio, 54)
    done = await anonymous.post(f"{E}/enrollments/{folio}/complete", headers=drive.operator)
    assert done.status_code == 200, done.text
    async with sessions() as s:
        status = await s.scalar(select(Appointment.status).where(Appointment.folio == held))
    assert status == "cancelled"


async def test_a_module_municipality_must_be_one_of_its_state_in_inegi(
    anonymous: httpx.AsyncClient, token_for: TokenFor
) -> None:
    supervisor = token_for(Role.SUPERVISOR)
    body = {"code": "MR-13-0999", "name": "Fantasma", "state": "13",
            "address": "Centro 1, Pachuca", "daily_capacity": 50}  # fmt: skip
    for municipality in ("999", "000", "085"):  # Hidalgo has 001 to 084
        made = await anonymous.post(
            f"{E}/modules", headers=supervisor, json={**body, "municipality": municipality}
        )
        assert made.status_code == 422, (municipality, made.text)
        assert made.headers["content-type"] == "application/problem+json"
        problems = made.json()["errors"]
        assert [p["field"] for p in problems] == ["municipality"], problems
        assert f"{municipality} no es un municipio INEGI de la entidad 13" in made.text
    cdmx_key_in_hidalgo = {**body, "state": "09", "municipality": "048"}
    assert (await anonymous.post(f"{E}/modules", headers=supervisor,
                                 json=cdmx_key_in_hidalgo)).status_code == 422  # fmt: skip
    good = await anonymous.post(
        f"{E}/modules", headers=supervisor, json={**body, "municipality": "084"}
    )
    assert good.status_code == 201, good.text


async def test_the_enrolled_without_a_municipality_are_counted_in_their_state(
    anonymous: httpx.AsyncClient,
    drive: Drive,
    signing_key: str,
    token_for: TokenFor,
    sessions: async_sessionmaker[AsyncSession],
    settings: Settings,
) -> None:
    """A person whose address has a state and no municipality counts in the state and in no
    municipality: a figure of their own, so that the municipalities' rows add up."""
    ministry = token_for(Role.INSTITUTION_ADMIN)
    doc = person_doc()
    doc["address"] = {"state": "13"}
    await enroll_adult(anonymous, drive, 61, doc)
    await enroll_adult(anonymous, drive, 62)  # Pachuca

    report = (await anonymous.get(P, params={"state": "13"}, headers=ministry)).json()
    hidalgo = next(s for s in report["states"] if s["key"] == "13")
    assert (hidalgo["enrolled"], hidalgo["enrolled_without_municipality"]) == (2, 1)
    placed = sum(m["enrolled"] for m in report["municipalities"])
    assert placed + hidalgo["enrolled_without_municipality"] == hidalgo["enrolled"]
    assert report["national"]["enrolled_without_municipality"] == 1
    assert all(
        s["enrolled_without_municipality"] == 0 for s in report["states"] if s is not hidalgo
    )

    table = parse_csv(await anonymous.get(f"{P}.csv", headers=ministry))
    row = next(r for r in table if r["cve_entidad"] == "13")
    assert row["personas_credencializadas_sin_municipio"] == "1"
    towns = parse_csv(await anonymous.get(f"{P}.csv", params={"state": "13"}, headers=ministry))
    assert sum(int(t["personas_credencializadas"]) for t in towns) == 2
    assert (towns[-1]["nom_municipio"], towns[-1]["personas_credencializadas"]) == (
        "Sin municipio en el domicilio", "1")  # fmt: skip

    anonymous.cookies.set("salud_session", drive.supervisor["Authorization"].split()[1])
    page = await anonymous.get("/avance", params={"state": "13"})
    assert page.status_code == 200, page.text
    assert "1 personas credencializadas tienen esta entidad en su domicilio pero no municipio" in (
        " ".join(page.text.split())
    )
    assert re.search(r"<td>Sin municipio en el domicilio</td><td></td>\s*<td>1</td>", page.text)


async def test_every_csv_opens_as_utf8_in_a_spreadsheet_and_runs_no_formula(
    anonymous: httpx.AsyncClient, drive: Drive, token_for: TokenFor
) -> None:
    boss = drive.supervisor
    morelia = token_for(Role.SUPERVISOR, username="supervisor.morelia", module="MR-16-0001")
    made = await anonymous.post(
        f"{E}/modules", headers=morelia,
        json={"code": "MR-16-0001", "name": "=HYPERLINK(\"http://x\";\"Michoacán\")",
              "state": "16", "municipality": "053", "address": "Centro 1, Morelia"},
    )  # fmt: skip
    assert made.status_code == 201, made.text
    assert (await anonymous.post(f"{E}/modules/MR-16-0001/status", headers=morelia,
                                 json={"status": "open"})).status_code == 200  # fmt: skip
    states = await anonymous.get(f"{P}.csv", headers=boss)
    assert "Michoacán de Ocampo".encode() in states.content
    parse_csv(states)
    parse_csv(await anonymous.get(f"{P}.csv", params={"state": "16"}, headers=boss))
    modules = parse_csv(await anonymous.get(f"{P}/modules.csv", headers=boss))
    named = {r["nom_modulo"] for r in modules if r["cve_modulo"] == "MR-16-0001"}
    assert named == {'\'=HYPERLINK("http://x";"Michoacán")'}  # a text, not a formula
    anonymous.cookies.set("salud_session", boss["Authorization"].split()[1])
    for url in ("/avance/entidades.csv", "/avance/modulos.csv"):  # the page's downloads
        parse_csv(await anonymous.get(url))


async def test_bad_values_on_the_page_get_a_page_and_a_view_is_one_audit_entry(
    anonymous: httpx.AsyncClient,
    token_for: TokenFor,
    drive: Drive,
    signing_key: str,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    await enroll_adult(anonymous, drive, 71)
    anonymous.cookies.set("salud_session", drive.supervisor["Authorization"].split()[1])
    for url, params, said in [
        ("/avance", {"state": "00"}, "Entidad (state): «00» no es una clave de entidad"),
        ("/avance", {"state": "33"}, "Entidad (state): «33»"),
        ("/avance", {"state": "39"}, "Entidad (state): «39»"),
        ("/avance", {"state": "1"}, "Entidad (state): «1»"),
        ("/avance", {"state": "x" * 300}, "Entidad (state): «xxxxxxxxxxxxxxxxxxx…»"),
        ("/avance", {"days": "0"}, "Días (days): «0» no es un número de días de 1 a 90"),
        ("/avance", {"days": "91"}, "Días (days): «91»"),
        ("/avance", {"days": "abc"}, "Días (days): «abc»"),
        ("/avance", {"days": "-3"}, "Días (days): «-3»"),
        ("/avance/entidades.csv", {"state": "35"}, "Entidad (state): «35»"),
        ("/avance/modulos.csv", {"days": "7.5"}, "Días (days): «7.5»"),
    ]:
        bad = await anonymous.get(url, params=params)
        assert bad.status_code == 422, (url, params, bad.text)
        assert bad.headers["content-type"].startswith("text/html"), (url, params)
        assert said in bad.text, (url, params)
        assert 'href="/avance"' in bad.text
    async with sessions() as s:
        last = (await s.execute(select(func.max(AuditEvent.seq)))).scalar_one() or 0
    page = await anonymous.get("/avance", params={"state": "13", "days": "7"})
    assert page.status_code == 200, page.text
    # The scale of the coverage bars is said: the longest is the highest coverage shown.
    assert "Cada barra se mide contra la cobertura más alta de las mostradas" in page.text
    async with sessions() as s:
        entries = (
            await s.execute(
                select(AuditEvent.subject_id, AuditEvent.outcome, AuditEvent.detail).where(
                    AuditEvent.action == progress.ACTION, AuditEvent.seq > last
                )
            )
        ).all()
    assert entries == [("page", "success", {"state": "13", "days": 7})]
    # Who may ask is judged before what they asked: a clinician gets the refusal (recorded),
    # not a lesson in state keys.
    anonymous.cookies.set("salud_session", token_for(Role.CLINICIAN)["Authorization"].split()[1])
    for url, params in (("/avance", {"state": "99"}), ("/avance/modulos.csv", {"days": "abc"})):
        refused = await anonymous.get(url, params=params)
        assert refused.status_code == 403, (url, refused.text)
