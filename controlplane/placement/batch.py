"""The placement tick for every service at once: smoothing, judging and ranking as array arithmetic.

Every service x candidate-region pair of the model is a column of one float array (numpy): the
poll's values, the smoothed memory and when it was updated. A tick is a handful of operations over
all pairs (EWMA, the minimum-volume gate, the SLO judgement, "did this service's input change?"),
one sort of the pairs by (service, latency, candidate order), and then, per service whose input
changed, the reference path's ``conclude`` on the few regions that carry or will carry traffic.
Per-region objects (``RegionFacts``, ``Smoothed``, the seen ``RegionSignal``) are built only when
someone reads them (``Decision.regions``, "why", the reference path of a later tick).

Covered here: a service with signals (not stale), candidates, no down cluster, and no region in
or returning from an SLO breach or over lowestCost's latency SLO, now or in its previous Decision.
Every other service is decided by ``single.decide_one`` (the reference path), which gives the same
Decision; tests/unit/test_placement_batch.py checks that both paths agree over generated models,
signals, health and clocks. ``None`` is encoded as NaN in the arrays: the poller never produces a
NaN (``feedback.parse`` turns non-finite values into None), so the two cannot be confused.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import replace
from itertools import repeat
from operator import attrgetter
from typing import Any, overload

import numpy as np
import numpy.typing as npt

from controlplane.feedback.signals import RegionSignal, SignalKey, Signals
from controlplane.placement.decision import Decision
from controlplane.placement.plan import ServicePlan, plan_for, plans_of
from controlplane.placement.single import (
    Health,
    Unit,
    by_service,
    conclude,
    decide_one,
    down_set,
    previous_target,
)
from controlplane.placement.smoothing import Smoothed
from controlplane.placement.strategies import (
    CHAIN_SHOWN,
    STRATEGIES,
    Choice,
    RegionFacts,
    inside_band,
)
from controlplane.policy.model import Model

__all__ = ["decide_batch"]

Floats = npt.NDArray[np.float64]

# the RegionSignal fields the engine reads, in the order of a block's first columns
FIELDS = ("success_rate", "latency_p50_ms", "latency_p90_ms", "latency_p99_ms", "requests")
S_OK, S_P50, S_P90, S_P99, S_REQ = range(5)
N_RAW = len(FIELDS)
PRESENT = N_RAW  # 1: the poll had a signal for the pair
HAS_MEM = N_RAW + 1  # 1: a smoothed value exists
M_OK, M_P50, M_P90, M_P99, M_REQ, M_UPD = range(N_RAW + 2, N_RAW + 8)
FRESH = N_RAW + 8  # 1: judged this poll (enough volume)
ROWS = N_RAW + 9
_SMOOTHED = (M_OK, M_P50, M_P90, M_P99)
_SAMPLE = (S_OK, S_P50, S_P90, S_P99)
_LAT_ROW = {"p50": M_P50, "p90": M_P90, "p99": M_P99}

_COLUMNS = tuple(attrgetter(f) for f in FIELDS)
_service_of = attrgetter("service")
_region_of = attrgetter("region")
_subset_of = attrgetter("subset")
_NAN_FOR_NONE: dict[object, float] = {None: np.nan}
_NOWHERE: dict[str, int] = {}


def _none(x: float) -> float | None:
    return None if x != x else x


class Block:
    """One service's pairs after a tick, one row per region (its own copy: a Decision keeps no
    other tick's arrays alive), and the poll's signals for them (``Decision.seen``)."""

    __slots__ = ("data", "names", "seen")

    def __init__(
        self, names: tuple[str, ...], data: Floats, seen: tuple[RegionSignal | None, ...]
    ) -> None:
        self.names = names
        self.data = data
        self.seen = seen

    def smoothed(self) -> dict[str, Smoothed]:
        rows = self.data[:, [HAS_MEM, M_OK, M_P50, M_P90, M_P99, M_REQ, M_UPD]].tolist()
        return {
            name: Smoothed(_none(ok), _none(p50), _none(p90), _none(p99), _none(req), upd)
            for name, (has, ok, p50, p90, p99, req, upd) in zip(self.names, rows, strict=True)
            if has
        }


class SmoothedView(Mapping[str, Smoothed]):
    """``Decision.smoothed`` of a batch decision: built from its block when first read."""

    __slots__ = ("_items", "block")

    def __init__(self, block: Block) -> None:
        self.block = block
        self._items: dict[str, Smoothed] | None = None

    def _all(self) -> dict[str, Smoothed]:
        if self._items is None:
            self._items = self.block.smoothed()
        return self._items

    def __getitem__(self, key: str) -> Smoothed:
        return self._all()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._all())

    def __len__(self) -> int:
        return len(self._all())


class LazyFacts(Sequence[RegionFacts]):
    """``Decision.facts`` of a batch decision (every region eligible, none down)."""

    __slots__ = ("_items", "block", "plan", "smoothed")

    def __init__(self, plan: ServicePlan, block: Block, smoothed: SmoothedView) -> None:
        self.plan = plan
        self.block = block
        self.smoothed = smoothed
        self._items: tuple[RegionFacts, ...] | None = None

    def _all(self) -> tuple[RegionFacts, ...]:
        if self._items is None:
            sm = self.smoothed
            fresh = self.block.data[:, FRESH].tolist()
            self._items = tuple(
                RegionFacts(
                    r.name,
                    r.order,
                    r.clusters,
                    r.clusters,
                    r.cost,
                    r.capacity,
                    sm.get(r.name),
                    bool(fresh[i]),
                )
                for i, r in enumerate(self.plan.regions)
            )
        return self._items

    @overload
    def __getitem__(self, i: int) -> RegionFacts: ...
    @overload
    def __getitem__(self, i: slice) -> Sequence[RegionFacts]: ...
    def __getitem__(self, i: int | slice) -> Any:
        return self._all()[i]

    def __len__(self) -> int:
        return len(self.plan.regions)


class Layout:
    """The pairs of one model's services (those with candidates), computed once per model."""

    def __init__(self, model: Model, names: tuple[str, ...]) -> None:
        self.model = model
        self.names = names
        self.source = plans_of(model)  # the plans it holds are this memo's
        self.services: list[str] = []
        self.plans: list[ServicePlan] = []
        self.pairs: dict[str, dict[str, int]] = {}  # service -> region -> pair
        offsets = [0]
        for name in dict.fromkeys(names):
            plan = plan_for(model, name)
            if not plan.regions:
                continue
            base = offsets[-1]
            self.pairs[name] = {region: base + i for i, region in enumerate(plan.region_names)}
            self.services.append(name)
            self.plans.append(plan)
            offsets.append(base + len(plan.regions))
        self.offsets = offsets
        self.size = offsets[-1]
        counts = np.asarray(offsets[1:], dtype=np.intp) - np.asarray(offsets[:-1], dtype=np.intp)
        self.seg = np.repeat(np.arange(len(self.plans), dtype=np.intp), counts)
        self.start = np.repeat(np.asarray(offsets[:-1], dtype=np.intp), counts)
        self.latency_services = any(p.strategy.type == "lowestLatency" for p in self.plans)

        def per_pair(values: Iterable[float]) -> Floats:
            return np.repeat(np.fromiter(values, dtype=np.float64, count=len(self.plans)), counts)

        damping = [p.strategy.damping for p in self.plans]
        self.alpha = per_pair(d.ewma_alpha for d in damping)
        self.beta = per_pair(1.0 - d.ewma_alpha for d in damping)
        self.min_requests = per_pair(float(d.min_requests) for d in damping)
        self.min_zero = self.min_requests == 0.0
        self.forget = per_pair(p.forget_after for p in self.plans)
        slos = [p.strategy.slo for p in self.plans]
        self.floor = per_pair(
            s.success_rate if s is not None and s.success_rate is not None else np.nan for s in slos
        )
        self.limit = per_pair(
            float(s.latency_p99)
            if p.strategy.type == "lowestCost" and s is not None and s.latency_p99 is not None
            else np.nan
            for p, s in zip(self.plans, slos, strict=True)
        )
        self.lat_row = np.repeat(
            np.fromiter(
                (_LAT_ROW.get(p.strategy.latency_percentile, M_P99) for p in self.plans),
                dtype=np.intp,
                count=len(self.plans),
            ),
            counts,
        )
        self.columns = np.arange(self.size, dtype=np.intp)

    def any_per_service(self, mask: npt.NDArray[np.bool_]) -> list[bool]:
        total = np.concatenate(([0], np.cumsum(mask, dtype=np.intp)))
        ends = np.asarray(self.offsets, dtype=np.intp)
        found: list[bool] = (total[ends[1:]] - total[ends[:-1]] > 0).tolist()
        return found


_LAYOUTS: dict[int, Layout] = {}
_KEEP_LAYOUTS = 3


def layout_for(model: Model, names: tuple[str, ...]) -> Layout:
    found = _LAYOUTS.get(id(model))
    if (
        found is not None
        and found.model is model
        and found.source is plans_of(model)
        and found.names == names
    ):
        return found
    if len(_LAYOUTS) >= _KEEP_LAYOUTS:
        _LAYOUTS.pop(next(iter(_LAYOUTS)))
    found = _LAYOUTS[id(model)] = Layout(model, names)
    return found


def _empty(plan: ServicePlan) -> Floats:
    block = plan.memo.get("empty")
    if block is None:
        block = plan.memo["empty"] = np.zeros((len(plan.regions), ROWS))
        block[:, :N_RAW] = np.nan
        block[:, M_OK : M_UPD + 1] = np.nan
    return block


def _from_decision(prev: Decision, plan: ServicePlan) -> Floats:
    """The smoothed memory of a Decision made on the reference path, as a block."""
    data = _empty(plan).copy()
    for i, name in enumerate(plan.region_names):
        m = prev.smoothed.get(name)
        if m is not None:
            data[i, HAS_MEM] = 1.0
            data[i, M_OK : M_UPD + 1] = (
                m.success_rate,
                m.latency_p50_ms,
                m.latency_p90_ms,
                m.latency_p99_ms,
                m.requests,
                m.updated_at,
            )
    return data


def _covered(prev: Decision, plan: ServicePlan) -> bool:
    """Whether the batch can continue from ``prev`` (same plan, every region was eligible)."""
    if not (prev.plan is plan or prev.plan == plan) or prev.breached:
        return False
    verdicts = prev.verdicts
    return verdicts is plan.all_eligible or all(v == "eligible" for v in verdicts.values())


def _plan_choice(plan: ServicePlan, k: int) -> Choice:
    """The strategy's choice when every region is eligible and none is down: for every strategy
    but lowestLatency it depends on the plan alone (static weights, order, capacity, cost)."""
    found = plan.memo.get(("choice", k))
    if found is None:
        facts = [
            RegionFacts(r.name, r.order, r.clusters, r.clusters, r.cost, r.capacity, None, False)
            for r in plan.regions
        ]
        found = plan.memo[("choice", k)] = STRATEGIES[plan.strategy.type](
            facts, plan.strategy, k, {}
        )
    return found


def _lowest_latency(
    plan: ServicePlan,
    k: int,
    previous: Mapping[str, int],
    lat: Sequence[float],
    ranked: Sequence[int],
    measured: int,
) -> Choice:
    """``strategies.lowest_latency`` over every region of the plan, from the sorted pairs:
    ``lat`` per region (NaN: no data), ``ranked`` the first measured regions by (latency, order),
    at least ``CHAIN_SHOWN`` and ``k`` + len(previous) of them when there are as many."""
    strategy = plan.strategy
    pct = strategy.latency_percentile
    names = plan.region_names
    index = plan.region_index
    current = [r for r in previous if r in index]
    if not measured:
        if current:
            return Choice(
                dict.fromkeys(current, 1.0),
                [f"no {pct} latency data: keeping the current regions"],
                "hold.noData",
            )
        return Choice(dict.fromkeys(names, 1.0), [f"no {pct} latency data yet: equal shares"])
    unmeasured = (
        [n for n, v in zip(names, lat, strict=True) if v != v] if measured < len(names) else []
    )
    held = set(current)
    keep = 1.0 - strategy.damping.stickiness_bonus_percent / 100.0
    picks: list[int] = []
    for i in ranked:
        if len(picks) == k:
            break
        if names[i] not in held:
            picks.append(i)
    for r in current:
        i = index[r]
        if lat[i] == lat[i]:
            picks.append(i)

    def score(i: int) -> tuple[float, int]:
        v = lat[i]
        return (v * keep if names[i] in held else v, i)

    best = ([names[i] for i in sorted(picks, key=score)[:k]] + unmeasured)[:k]
    fastest = ranked[:CHAIN_SHOWN]
    chain = " < ".join(f"{names[i]} {lat[i]:.1f}ms" for i in fastest)
    more = measured - len(fastest)
    details = [f"{pct} latency: " + (f"{chain} < … ({more} more)" if more > 0 else chain)]
    if strategy.damping.stickiness_bonus_percent and current:
        details.append(
            f"current regions ranked with a {strategy.damping.stickiness_bonus_percent:g}% bonus"
        )
    if current and len(current) == min(k, len(names)) and set(best) != set(current):
        missing = [n for n in current if (v := lat[index[n]]) != v]
        if missing:
            details.append(
                f"no latency data for current {', '.join(missing)}: keeping the current regions"
            )
            return Choice(dict.fromkeys(current, 1.0), details, "hold.noData")
        known = {n: v for n in (*current, *best) if (v := lat[index[n]]) == v}
        band = inside_band(known, current, [n for n in best if n in known], strategy)
        if band is not None:
            details.append(band)
            return Choice(dict.fromkeys(current, 1.0), details, "hold.hysteresis")
    return Choice(dict.fromkeys(best, 1.0), details)


class Poll:
    """One poll laid over the pairs: which pair each signal belongs to (read once, C-level maps
    over the keys: one Python call per signal is the whole budget)."""

    def __init__(self, layout: Layout, signals: Signals) -> None:
        self.size = layout.size
        self.objects = np.full(layout.size, None, dtype=object)
        self.polled: list[RegionSignal] = []
        self.keep: npt.NDArray[np.bool_] = np.zeros(0, dtype=bool)
        self.cols: npt.NDArray[np.intp] = np.zeros(0, dtype=np.intp)
        values = signals.values
        if values:
            keys, n = list(values), len(values)
            by_service = map(layout.pairs.get, map(_service_of, keys), repeat(_NOWHERE))
            where = np.fromiter(
                map(dict.get, by_service, map(_region_of, keys), repeat(-1)),
                dtype=np.intp,
                count=n,
            )
            where[np.fromiter(map(bool, map(_subset_of, keys)), dtype=bool, count=n)] = -1
            self.keep = where >= 0
            self.cols = where[self.keep]
            self.polled = list(values.values())
            self.objects[self.cols] = np.fromiter(self.polled, dtype=object, count=n)[self.keep]

    def fields(self) -> tuple[Floats, Floats]:
        """Per pair: the values of FIELDS (NaN = None) and whether the poll had a signal."""
        raw = np.full((N_RAW, self.size), np.nan)
        present = np.zeros(self.size)
        n = len(self.polled)
        if n:
            for row, field in enumerate(_COLUMNS):
                try:  # a column without None converts in one pass
                    got = np.fromiter(map(field, self.polled), dtype=np.float64, count=n)
                except TypeError:
                    column = list(map(field, self.polled))
                    got = np.fromiter(
                        map(_NAN_FOR_NONE.get, column, column), dtype=np.float64, count=n
                    )
                raw[row, self.cols] = got[self.keep]
            present[self.cols] = 1.0
        return raw, present


def decide_batch(
    model: Model,
    *,
    now: float,
    signals: Signals | None,
    health: Health | None,
    previous: Mapping[str, Decision],
    names: Iterable[str],
) -> dict[str, Decision]:
    """What ``single.decide_all_each`` returns, for every service at once."""
    order = tuple(names)
    down_all = down_set(health)
    if signals is None or signals.stale:
        return {n: decide_one(model, n, now, signals, down_all, previous.get(n), {}) for n in order}
    layout = layout_for(model, order)
    out: dict[str, Decision] = {}
    prevs: list[Decision | None] = []
    covered: list[bool] = []
    for name, plan in zip(layout.services, layout.plans, strict=True):
        prev = previous.get(name)
        if prev is not None and prev.service != name:
            prev = None
        prevs.append(prev)
        covered.append(
            (not down_all or plan.cluster_names.isdisjoint(down_all))
            and (prev is None or _covered(prev, plan))
        )
    if any(covered):
        _decide_covered(layout, signals, now, prevs, covered, out)
    values = signals.values
    rest = [name for name in order if name not in out]
    # many services left for the reference path (an incident): group the poll once, as it does
    grouped = by_service(signals) if len(rest) > _GROUP_FROM else None
    for name in rest:
        if grouped is not None:
            own = grouped.get(name, {})
        else:
            own = {
                r: sig
                for r in plan_for(model, name).region_names
                if (sig := values.get(SignalKey(name, r))) is not None
            }
        out[name] = decide_one(model, name, now, signals, down_all, previous.get(name), own)
    return {name: out[name] for name in order}


_GROUP_FROM = 32


def _decide_covered(
    layout: Layout,
    signals: Signals,
    now: float,
    prevs: list[Decision | None],
    covered: list[bool],
    out: dict[str, Decision],
) -> None:
    """Decide the covered services into ``out`` (those it finds judged out stay undecided)."""
    poll = Poll(layout, signals)
    polled = poll.objects.tolist()
    offsets = layout.offsets
    seens: list[tuple[RegionSignal | None, ...]] = []
    todo: list[int] = []
    for si, (name, plan) in enumerate(zip(layout.services, layout.plans, strict=True)):
        seen = tuple(polled[offsets[si] : offsets[si + 1]])
        seens.append(seen)
        if not covered[si]:
            continue
        prev = prevs[si]
        if (  # the reference's "inputs unchanged" (covered: the same plan)
            prev is not None
            and not prev.stale
            and not prev.down
            and (prev.next_decision_at is None or now < prev.next_decision_at)
            and prev.seen == seen
        ):
            out[name] = prev if prev.plan is plan else replace(prev, plan=plan)
        else:
            todo.append(si)
    if not todo:
        return
    blocks = [_empty(plan) for plan in layout.plans]
    for si in todo:
        prev, plan = prevs[si], layout.plans[si]
        if prev is not None:
            sm = prev.smoothed
            if isinstance(sm, SmoothedView) and sm.block.names == plan.region_names:
                blocks[si] = sm.block.data
            else:
                blocks[si] = _from_decision(prev, plan)
    raw, present = poll.fields()
    new = _tick(layout, np.concatenate(blocks).T, raw, present, now)
    fresh = new[FRESH] > 0
    has = new[HAS_MEM] > 0
    with np.errstate(invalid="ignore"):
        breach = fresh & (new[M_OK] < layout.floor)
        over = has & (new[M_P99] > layout.limit)
    judged_out = layout.any_per_service(breach | over)
    lat = new[layout.lat_row, layout.columns]
    measured = has & ~np.isnan(lat)
    measured_n = np.add.reduceat(measured.astype(np.intp), offsets[:-1]).tolist()
    ranked: list[int] = []
    lat_list: list[float] = []
    if layout.latency_services:
        # per service, the measured regions by (latency, candidate order): a stable sort of the
        # pairs by (service, unmeasured, latency) keeps the candidate order among equals
        by_latency = np.lexsort((np.where(measured, lat, 0.0), ~measured, layout.seg))
        ranked = (by_latency - layout.start).tolist()
        lat_list = np.where(measured, lat, np.nan).tolist()
    pair_major = np.ascontiguousarray(new.T)
    for si in todo:
        if judged_out[si]:
            continue  # a breach or an overLatencySlo: the reference path decides it
        name, plan, prev = layout.services[si], layout.plans[si], prevs[si]
        a, b = offsets[si], offsets[si + 1]
        kept = Block(plan.region_names, pair_major[a:b].copy(), seens[si])
        smoothed = SmoothedView(kept)
        prev_target = previous_target(prev, plan)
        k = min(plan.spread.min_regions, max(1, b - a))
        if plan.strategy.type == "lowestLatency":
            top = min(measured_n[si], max(CHAIN_SHOWN, k + len(prev_target)))
            choice = _lowest_latency(
                plan, k, prev_target, lat_list[a:b], ranked[a : a + top], measured_n[si]
            )
        else:
            choice = _plan_choice(plan, k)
        out[name] = conclude(
            plan,
            prev,
            now,
            stale=False,
            signals_at=signals.at,
            same_plan=prev is not None,
            down=frozenset(),
            facts=LazyFacts(plan, kept, smoothed),
            verdicts=plan.all_eligible,
            breached={},
            eligible_names=plan.region_set,
            prev_target=prev_target,
            choice=choice,
            smoothed=smoothed,
            seen=seens[si],
            units=_units(plan),
        )


def _units(plan: ServicePlan) -> Any:
    def units() -> Iterable[Unit]:
        return ((r.name, r.clusters, r.clusters) for r in plan.regions)

    return units


def _tick(layout: Layout, past: Floats, raw: Floats, present: Floats, now: float) -> Floats:
    """The pairs after this poll: the poll's values, the volume gate, the EWMA."""
    new = past.copy()
    new[:N_RAW] = raw
    new[PRESENT] = present
    requests = raw[S_REQ]
    with np.errstate(invalid="ignore"):
        enough = np.where(
            np.isnan(requests),
            layout.min_zero & ~np.isnan(raw[S_OK]),
            (requests >= layout.min_requests) & (requests > 0),
        )
        fresh = (present > 0) & enough
        has = past[HAS_MEM] > 0
        updated = past[M_UPD]
        reset = fresh & (~has | (now - updated > layout.forget))
    blend = fresh & ~reset
    alpha, beta = layout.alpha, layout.beta
    for m, s in zip(_SMOOTHED, _SAMPLE, strict=True):
        old, x = past[m], raw[s]
        mixed = np.where(np.isnan(x), old, np.where(np.isnan(old), x, alpha * x + beta * old))
        new[m] = np.where(reset, x, np.where(blend, mixed, old))
    new[M_REQ] = np.where(fresh, requests, past[M_REQ])
    new[M_UPD] = np.where(fresh, now, updated)
    new[HAS_MEM] = (has | fresh).astype(np.float64)
    new[FRESH] = fresh.astype(np.float64)
    return new
