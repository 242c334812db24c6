"""The nearest health units to a point: an in-memory k-d tree over the catalog.

Units are points on the unit sphere (x, y, z). The straight-line (chord) distance between two
such points grows with the great-circle distance, so the k nearest by chord are the k
nearest on the sphere; a chord c converts to kilometres as 2·asin(c/2)·R.

A query fetches more candidates than it needs, drops those the filters reject and widens the
search until it has k or none are left. A k-d tree per institution answers "the nearest
units of my institutions" without wading through the others, and the expected share of
units that pass the filters sizes the first fetch. A typical query (k=5, one institution)
is one tree lookup plus a few microseconds of Python: keep it that way.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt
from scipy.spatial import cKDTree
from sqlalchemy.ext.asyncio import AsyncSession

from salud.facilities import hours as hours_rules
from salud.facilities import repository
from salud.kit.geo import EARTH_RADIUS_KM
from salud.kit.text import fold
from salud.kit.workdays import holidays

MAX_K = 50
# Up to this many institutions, together under this share of all units, are searched in
# their own trees; otherwise the national tree is searched and filtered. Measured: units of
# one institution cluster in some states, so filtering the national tree for a minority
# institution can wade through thousands of others (IMS+IST: 3,000 q/s against 18,000).
_SUBTREE_LIMIT = 4
_SUBTREE_SHARE = 0.5
# Up to this many candidates are filtered in plain Python (cheaper than numpy calls);
# more, with numpy masks.
_SCALAR_FILTER_MAX = 256
# Local times for "open now" at the current minute, per zone, shared by every query:
# (weekday, minute of the day, today a mandatory rest day, yesterday one).
LocalTimes = dict[int, tuple[int, int, bool, bool]]
_EVERY_DAY = 0b1111111


class NearestHit(NamedTuple):
    clues: str
    name: str
    institution_code: str
    level_of_care: int | None
    distance_km: float
    latitude: float
    longitude: float
    location_precision: str
    open_now: bool | None


def chord_for_km(km: float) -> float:
    return 2.0 * math.sin(min(km / EARTH_RADIUS_KM, math.pi) / 2.0)


def km_for_chord(chord: float) -> float:
    return 2.0 * math.asin(min(chord / 2.0, 1.0)) * EARTH_RADIUS_KM


class _Source:
    """One k-d tree and, for a per-institution tree, the catalog positions of its points."""

    __slots__ = ("ids", "size", "tree")

    def __init__(self, xyz: npt.NDArray[np.float64], ids: npt.NDArray[np.intp] | None) -> None:
        self.tree = cKDTree(xyz if ids is None else xyz[ids])
        self.ids = ids
        self.size = int(self.tree.n)


class NearestIndex:
    """Immutable index over the units that have coordinates."""

    def __init__(self, rows: list[Mapping[str, Any]]) -> None:
        n = len(rows)
        self.size = n
        # Plain lists for per-unit reads (a numpy scalar read costs more than a list's).
        self._clues: list[str] = [r["clues"] for r in rows]
        self._names: list[str] = [r["name"] for r in rows]
        self._inst_codes: list[str] = [r["institution_code"] for r in rows]
        self._levels: list[int | None] = [r["level_of_care"] for r in rows]
        self._opers: list[bool | None] = [r["in_operation"] for r in rows]
        self._precision: list[str] = [r["location_precision"] for r in rows]
        self._lats: list[float] = [float(r["latitude"]) for r in rows]
        self._lngs: list[float] = [float(r["longitude"]) for r in rows]
        self._codes = sorted(set(self._inst_codes))
        self._code_pos = {c: i for i, c in enumerate(self._codes)}
        zone_names = [
            hours_rules.zone_for_unit(r["state_code"], r["state_key"], r["municipality_key"]).key
            for r in rows
        ]
        self._zones = [ZoneInfo(z) for z in sorted(set(zone_names))]
        zone_pos = {z.key: i for i, z in enumerate(self._zones)}
        self._tz: list[int] = [zone_pos[z] for z in zone_names]
        self._start: list[int] = [-1] * n
        self._end: list[int] = [-1] * n
        self._bits: list[int] = [-1] * n
        for i, r in enumerate(rows):
            h = r["hours"]
            if h and h.get("open") and h.get("close"):
                self._start[i], self._end[i] = hours_rules.window(h["open"], h["close"])
                self._bits[i] = hours_rules.days_bits(h.get("days"))
        # The same, as arrays, for the numpy masks of wide searches.
        self._a_inst = np.array([self._code_pos[c] for c in self._inst_codes], dtype=np.int16)
        self._a_level = np.array([lv or 0 for lv in self._levels], dtype=np.int8)
        self._a_oper = np.array([-1 if o is None else int(o) for o in self._opers], dtype=np.int8)
        self._a_tz = np.array(self._tz, dtype=np.int8)
        self._a_start = np.array(self._start, dtype=np.int16)
        self._a_end = np.array(self._end, dtype=np.int16)
        self._a_bits = np.array(self._bits, dtype=np.int8)
        # Units per (institution, level, operating) to size the first fetch.
        self._counts: dict[tuple[int, int | None, bool | None], int] = {}
        for code, lv, op in zip(self._inst_codes, self._levels, self._opers, strict=True):
            key = (self._code_pos[code], lv, op)
            self._counts[key] = self._counts.get(key, 0) + 1
        self._shares: dict[tuple[frozenset[str] | None, int | None, bool | None, bool], float] = {}
        self._now: tuple[int, LocalTimes] = (-1, {})
        if n:
            lat, lng = np.radians(self._lats), np.radians(self._lngs)
            xyz = np.column_stack(
                (np.cos(lat) * np.cos(lng), np.cos(lat) * np.sin(lng), np.sin(lat))
            )
            self._all: _Source | None = _Source(xyz, None)
            self._by_inst = {
                code: _Source(xyz, np.flatnonzero(self._a_inst == pos).astype(np.intp))
                for code, pos in self._code_pos.items()
            }
        else:
            self._all, self._by_inst = None, {}

    @classmethod
    def build(cls, rows: Iterable[Mapping[str, Any]]) -> NearestIndex:
        """Rows with clues, name, institution_code, state_code, level_of_care, in_operation,
        latitude, longitude, location_precision and hours (rows without coordinates skipped)."""
        return cls([r for r in rows if r["latitude"] is not None and r["longitude"] is not None])

    @property
    def institutions(self) -> list[str]:
        return list(self._codes)

    def query(
        self,
        lat: float,
        lng: float,
        k: int = 5,
        *,
        max_km: float | None = None,
        institutions: Iterable[str] | None = None,
        level: int | None = None,
        in_operation: bool | None = True,
        open_now: bool = False,
        at: datetime | None = None,
    ) -> list[NearestHit]:
        """The k nearest units matching every filter, nearest first."""
        if self._all is None or k <= 0:
            return []
        wide: list[str] | None = None  # institutions filtered out of the national tree
        wanted: list[str] | None = None
        if institutions is None:
            sources = [self._all]
        else:
            wanted = [c for c in set(institutions) if c in self._code_pos]
            if not wanted:
                return []
            trees = [self._by_inst[c] for c in wanted]
            # A few institutions: their own trees. Many, or most of the catalog: the
            # national tree, filtered (one lookup instead of several).
            if len(trees) == 1 or (
                len(trees) <= _SUBTREE_LIMIT
                and sum(t.size for t in trees) < _SUBTREE_SHARE * self.size
            ):
                sources = trees
            else:
                sources, wide = [self._all], wanted
        local = self._local_times(at)
        phi, lam = math.radians(lat), math.radians(lng)
        cos_phi = math.cos(phi)
        point = (cos_phi * math.cos(lam), cos_phi * math.sin(lam), math.sin(phi))
        radius = chord_for_km(max_km) * (1 + 1e-12) if max_km is not None else math.inf
        accept = self._acceptor(wide, level, in_operation, open_now, local)
        if accept is None:
            fetch = k
        else:
            fetch = self._first_fetch(k, wanted, sources, level, in_operation, open_now)
        while True:
            dist, idx, boundary = self._candidates(sources, point, fetch, radius)
            if len(idx) <= _SCALAR_FILTER_MAX:
                chosen: list[tuple[int, float]] = []
                for chord, i in zip(dist.tolist(), idx.tolist(), strict=True):
                    if chord > boundary:
                        break
                    if accept is None or accept(i):
                        chosen.append((i, chord))
                        if len(chosen) == k:
                            break
            else:
                mask = self._mask(dist, idx, boundary, wide, level, in_operation, open_now, local)
                picked = np.flatnonzero(mask)[:k]
                chosen = list(zip(idx[picked].tolist(), dist[picked].tolist(), strict=True))
            if len(chosen) >= k or boundary == math.inf:
                break
            fetch *= 4
        hits = []
        r2 = 2.0 * EARTH_RADIUS_KM
        for i, chord in chosen:
            km = r2 * math.asin(min(chord * 0.5, 1.0))
            if max_km is not None and km > max_km:
                break
            hits.append(
                NearestHit(
                    self._clues[i],
                    self._names[i],
                    self._inst_codes[i],
                    self._levels[i],
                    round(km, 2),
                    self._lats[i],
                    self._lngs[i],
                    self._precision[i],
                    None if self._start[i] < 0 else self._open_state(i, local),
                )
            )
        return hits

    def _first_fetch(
        self,
        k: int,
        wanted: list[str] | None,
        sources: list[_Source],
        level: int | None,
        in_operation: bool | None,
        open_now: bool,
    ) -> int:
        """Enough candidates that, at the expected share passing the filters, k pass."""
        key = (None if wanted is None else frozenset(wanted), level, in_operation, open_now)
        share = self._shares.get(key)
        if share is None:
            positions = (
                range(len(self._codes)) if wanted is None else [self._code_pos[c] for c in wanted]
            )
            total = sum(s.size for s in sources)
            passing = sum(
                count
                for (pos, lv, op), count in self._counts.items()
                if pos in positions
                and (level is None or lv == level)
                and (in_operation is None or op is in_operation)
            )
            # Open hours are not counted; assume about half the units are open.
            share = passing / total * (0.5 if open_now else 1.0)
            if len(self._shares) > 4096:
                self._shares.clear()
            self._shares[key] = share
        if share == 0:
            return sum(s.size for s in sources)
        return max(k, math.ceil(k / share * 1.25) + 2)

    def _acceptor(
        self,
        wide: list[str] | None,
        level: int | None,
        in_operation: bool | None,
        open_now: bool,
        local: LocalTimes,
    ) -> Callable[[int], bool] | None:
        """The filters as a predicate on one unit (None when nothing is filtered)."""
        if wide is None and level is None and in_operation is None and not open_now:
            return None
        allowed = None if wide is None else set(wide)
        opers, levels, codes = self._opers, self._levels, self._inst_codes

        def accept(i: int) -> bool:
            if in_operation is not None and opers[i] is not in_operation:
                return False
            if level is not None and levels[i] != level:
                return False
            if allowed is not None and codes[i] not in allowed:
                return False
            return not open_now or self._open_state(i, local) is True

        return accept

    def _mask(
        self,
        dist: npt.NDArray[np.float64],
        idx: npt.NDArray[np.intp],
        boundary: float,
        wide: list[str] | None,
        level: int | None,
        in_operation: bool | None,
        open_now: bool,
        local: LocalTimes,
    ) -> npt.NDArray[np.bool_]:
        """The filters as a numpy mask over many candidates (the twin of _acceptor)."""
        mask = dist <= boundary
        if wide is not None:
            mask &= np.isin(self._a_inst[idx], [self._code_pos[c] for c in wide])
        if level is not None:
            mask &= self._a_level[idx] == level
        if in_operation is not None:
            mask &= self._a_oper[idx] == int(in_operation)
        if open_now:
            zones = [local[z] for z in range(len(self._zones))]
            wd = np.array([t[0] for t in zones], dtype=np.int8)
            mn = np.array([t[1] for t in zones], dtype=np.int16)
            rt = np.array([t[2] for t in zones], dtype=np.bool_)
            ry = np.array([t[3] for t in zones], dtype=np.bool_)
            tz = self._a_tz[idx]
            mask &= hours_rules.open_mask(
                self._a_start[idx], self._a_end[idx], self._a_bits[idx],
                wd[tz], mn[tz], rt[tz], ry[tz],
            )  # fmt: skip
        return mask

    @staticmethod
    def _candidates(
        sources: list[_Source],
        point: tuple[float, float, float],
        wanted: int,
        radius: float,
    ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.intp], float]:
        """The `wanted` nearest of each source within `radius`, nearest first, and the
        distance up to which the union is complete (inf when every source was exhausted)."""
        boundary = math.inf
        parts_d: list[npt.NDArray[np.float64]] = []
        parts_i: list[npt.NDArray[np.intp]] = []
        for source in sources:
            size = source.size
            n = min(wanted, size)
            # Positional arguments: (x, k, eps, p, distance_upper_bound); keywords cost more.
            d, i = source.tree.query(point, n, 0, 2, radius)
            if n == 1:
                d, i = np.atleast_1d(d), np.atleast_1d(i)
            if radius != math.inf:
                found = i < size
                if not found[-1]:
                    d, i = d[found], i[found]
                    n = size  # nothing more within the radius: exhausted
            if n < size:
                boundary = min(boundary, float(d[-1]))
            parts_d.append(d)
            parts_i.append(i if source.ids is None else source.ids[i])
        if len(parts_d) == 1:
            return parts_d[0], parts_i[0], boundary
        dist = np.concatenate(parts_d)
        idx = np.concatenate(parts_i)
        order = np.argsort(dist, kind="stable")
        return dist[order], idx[order], boundary

    def _local_times(self, at: datetime | None) -> LocalTimes:
        """(weekday, minute of day) in each zone at `at`, or now (cached for the minute)."""
        if at is not None:
            return self._compute_local(at)
        minute = int(time.time() // 60)
        cached_minute, cached = self._now
        if cached_minute != minute:
            cached = self._compute_local(datetime.fromtimestamp(minute * 60, UTC))
            self._now = (minute, cached)
        return cached

    def _compute_local(self, at: datetime) -> LocalTimes:
        result: LocalTimes = {}
        for z, zone in enumerate(self._zones):
            t = at.astimezone(zone)
            day = t.date()
            yesterday = day - timedelta(days=1)
            result[z] = (
                t.weekday(),
                t.hour * 60 + t.minute,
                day in holidays(day.year),
                yesterday in holidays(yesterday.year),
            )
        return result

    def _open_state(self, i: int, local: LocalTimes) -> bool | None:
        """hours.is_open for unit i, on the precomputed windows and local times."""
        start, end = self._start[i], self._end[i]
        if start < 0:
            return None
        weekday, minute, rest_today, rest_yesterday = local[self._tz[i]]
        overnight = end < start
        today = minute >= start and (overnight or minute < end)
        tail = overnight and minute < end
        if not today and not tail:
            return False
        bits = self._bits[i]
        if bits < 0:
            return None
        # As hours.is_open: on a mandatory rest day only a unit open every day is known open.
        if today and bits >> weekday & 1:
            return True if bits == _EVERY_DAY or not rest_today else None
        if tail and bits >> ((weekday + 6) % 7) & 1:
            return True if bits == _EVERY_DAY or not rest_yesterday else None
        return False


# Units of the catalog that are not a place a person goes to be seen: offices, warehouses,
# laboratories and other support units, and units without a fixed place (mobile units,
# brigades). Matched on the catalog's type and typology, folded (accents, case), since each
# source spells them its own way ("UNIDAD MÓVIL", "UNIDAD MEDICA MOVIL", "Um Temporal Covid").
_NOT_A_PLACE_OF_CARE = (
    "ADMINISTRATIV", "ALMACEN", "LABORATORIO", "ESTABLECIMIENTOS DE APOYO", "MOVIL",
    "BRIGADA", "TRASFUSION", "TRANSFUSION", "TEMPORAL",
    "CENTRO DE TRABAJO",  # a company's in-house clinic serves its workers only
)  # fmt: skip


def is_place_of_care(unit_type: str | None, typology: str | None) -> bool:
    """Whether a unit is somewhere a person goes for care (what "nearest" answers with)."""
    words = fold(f"{unit_type or ''} {typology or ''}")
    return not any(part in words for part in _NOT_A_PLACE_OF_CARE)


async def load_index(session: AsyncSession) -> NearestIndex:
    """The index of the units a person can go to for care (see `is_place_of_care`)."""
    rows = await repository.index_rows(session)
    return NearestIndex.build(
        r for r in rows if is_place_of_care(r.pop("unit_type"), r.pop("typology"))
    )


class IndexCache:
    """One index per process, rebuilt when the catalog changes. The check (count and latest
    change) runs at most once every `check_every` seconds, so an import shows up in
    nearest-unit answers within that time."""

    def __init__(self, check_every: float = 30.0) -> None:
        self.check_every = check_every
        self._index: NearestIndex | None = None
        self._fingerprint: tuple[int, datetime | None] | None = None
        self._checked = -math.inf
        self._lock = asyncio.Lock()

    async def get(self, session: AsyncSession) -> NearestIndex:
        if self._index is not None and time.monotonic() - self._checked < self.check_every:
            return self._index
        async with self._lock:
            if self._index is not None and time.monotonic() - self._checked < self.check_every:
                return self._index
            fingerprint = await repository.fingerprint(session)
            if self._index is None or fingerprint != self._fingerprint:
                self._index = await load_index(session)
                self._fingerprint = fingerprint
            self._checked = time.monotonic()
            return self._index
