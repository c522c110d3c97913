"""The RRL account table: the same verdicts as the per-process token buckets it replaced, sets
that collide, debt that rolls off after the window, and one table shared by two limiters (as
two DNS workers share it) through a memory file that leaves nothing behind."""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from controlplane.errors import UbiqError
from controlplane.gtm.dns.rcodes import NOERROR, NXDOMAIN, SERVFAIL
from controlplane.gtm.dns.rrl import ResponseRateLimiter, RrlConfig, Verdict
from controlplane.gtm.dns.rrl_table import MAX_SLOTS, WAYS, RrlTable, layout

RCODES = (NOERROR, NXDOMAIN, SERVFAIL)  # one per kind of account
HOSTS = ("192.0.2.1", "198.51.100.9", "2001:db8::1", "203.0.113.77")  # four prefixes


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Bucket:
    balance: float
    last: float
    limited: int = 0


@dataclass
class TokenBuckets:
    """The per-process limiter this table replaced, as the specification: a bucket of ``rate``
    tokens per (prefix, kind), refilled at ``rate``/s, debt capped at ``rate * window``."""

    rates: tuple[int, int, int]
    window: float
    slip: int
    buckets: dict[tuple[str, int], Bucket] = field(default_factory=dict)

    def check(self, host: str, kind: int, now: float) -> Verdict:
        rate = self.rates[kind]
        bucket = self.buckets.get((host, kind))
        if bucket is None:
            self.buckets[host, kind] = Bucket(rate - 1.0, now)
            return Verdict.SEND
        balance = min(rate, bucket.balance + max(0.0, now - bucket.last) * rate) - 1.0
        bucket.balance, bucket.last = max(balance, -rate * self.window), now
        if bucket.balance >= 0:
            return Verdict.SEND
        bucket.limited += 1
        return Verdict.SLIP if self.slip and bucket.limited % self.slip == 0 else Verdict.DROP


# rates and times that are exact binary fractions: both models compute without rounding
events = st.lists(
    st.tuples(
        st.sampled_from(HOSTS), st.integers(0, 2), st.integers(0, 64 * 3)
    ),  # host, kind, 1/64 s since the last event
    max_size=400,
)


@settings(max_examples=150, deadline=None)
@given(
    rates=st.tuples(*[st.sampled_from((1, 2, 4, 8, 16, 64))] * 3),
    window=st.sampled_from((0.25, 1.0, 2.0, 4.0, 15.0)),
    slip=st.integers(0, 3),
    sequence=events,
)
def test_verdicts_are_those_of_the_token_buckets_it_replaced(
    rates: tuple[int, int, int], window: float, slip: int, sequence: list[tuple[str, int, int]]
) -> None:
    clock = Clock()
    config = RrlConfig(*rates, window=window, slip=slip, exempt=())
    table = ResponseRateLimiter(config, clock)
    spec = TokenBuckets(rates, window, slip)
    for host, kind, ticks in sequence:
        clock.now += ticks / 64
        assert table.check(host, RCODES[kind]) == spec.check(host, kind, clock.now)
    assert table.evicted == 0


def test_a_prefix_is_answered_again_once_its_debt_rolls_off_the_window() -> None:
    clock = Clock()
    rrl = ResponseRateLimiter(RrlConfig(rate=4, window=2.0, exempt=()), clock)
    assert [rrl.check(HOSTS[0], NOERROR) for _ in range(1000)].count(Verdict.SEND) == 4
    clock.now += 2.0  # the debt (capped at rate x window = 8) is repaid, the account empty
    assert rrl.check(HOSTS[0], NOERROR) is not Verdict.SEND  # and that cost a token (1/4 s)
    clock.now += 0.5  # two tokens: that one repaid, one answer
    assert rrl.check(HOSTS[0], NOERROR) is Verdict.SEND
    assert rrl.check(HOSTS[0], NOERROR) is not Verdict.SEND
    clock.now += 1.25  # a full second of burst again
    assert [rrl.check(HOSTS[0], NOERROR) for _ in range(5)].count(Verdict.SEND) == 4


def small(size: int) -> tuple[ResponseRateLimiter, Clock]:
    clock = Clock()
    return ResponseRateLimiter(RrlConfig(rate=2, table_size=size, exempt=()), clock), clock


def test_prefixes_that_collide_in_one_set_keep_their_own_accounts() -> None:
    rrl, _ = small(WAYS)  # one set: every prefix collides
    for host in HOSTS:
        assert [rrl.check(host, NOERROR) for _ in range(3)] == [
            Verdict.SEND,
            Verdict.SEND,
            Verdict.DROP,
        ]
    assert rrl.accounts == WAYS and rrl.evicted == 0


def test_a_new_prefix_replaces_the_least_indebted_account_of_its_set() -> None:
    rrl, _ = small(WAYS)
    flooders = HOSTS[:3]
    for host in flooders:
        for _ in range(50):
            rrl.check(host, NOERROR)
    rrl.check(HOSTS[3], NOERROR)  # one query: the least indebted account of the set
    for n in range(500):  # forged sources, one query each, each from its own /24
        assert rrl.check(f"10.{n // 256}.{n % 256}.1", NOERROR) is Verdict.SEND
        assert all(rrl.check(host, NOERROR) is not Verdict.SEND for host in flooders)
    assert rrl.evicted == 500 and rrl.accounts == WAYS


def test_when_every_slot_of_a_set_is_in_debt_the_least_indebted_one_goes() -> None:
    rrl, _ = small(WAYS)
    for depth, host in enumerate(HOSTS, start=1):
        for _ in range(2 + depth):  # debts 1, 2, 3, 4 responses
            rrl.check(host, NOERROR)
    assert rrl.check("10.0.0.1", NOERROR) is Verdict.SEND
    assert rrl.evicted == 1
    assert rrl.check(HOSTS[0], NOERROR) is Verdict.SEND  # its account was the one replaced
    assert rrl.check(HOSTS[3], NOERROR) is not Verdict.SEND


@settings(max_examples=100, deadline=None)
@given(
    size=st.integers(1, 3 * WAYS),
    sequence=st.lists(st.tuples(st.integers(0, 40), st.integers(0, 2), st.integers(0, 32))),
)
def test_a_small_table_holds_each_account_once_and_never_more_than_its_size(
    size: int, sequence: list[tuple[int, int, int]]
) -> None:
    rrl, clock = small(size)
    for prefix, kind, ticks in sequence:
        clock.now += ticks / 64
        rrl.check(f"10.0.{prefix}.1", RCODES[kind])
        tags = [t for t in rrl.table.tags.tolist() if t]
        assert len(tags) == len(set(tags)) <= layout(size)[0] <= size


def test_layout_and_size_limits() -> None:
    assert layout(1) == (1, 1) and layout(WAYS) == (WAYS, WAYS)
    assert layout(4 * WAYS + 3) == (4 * WAYS, WAYS)  # rounded down to whole sets
    with pytest.raises(UbiqError, match=f"table size: expected 1..{MAX_SLOTS}, got 0"):
        RrlConfig(table_size=0)
    with pytest.raises(UbiqError, match="table size"):
        RrlConfig(table_size=MAX_SLOTS + 1)
    assert RrlTable.private(64).key != RrlTable.private(64).key  # a random hash key each


def memfds() -> int:
    """This process's descriptors of RRL memory files."""
    found = 0
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(FileNotFoundError):  # the descriptor listdir itself used
            found += "memfd:ubiq-rrl" in os.readlink(f"/proc/self/fd/{fd}")
    return found


def mapped() -> int:
    return Path("/proc/self/maps").read_text().count("/memfd:ubiq-rrl")


def test_two_limiters_on_one_shared_table_charge_the_same_account() -> None:
    """As two DNS workers do: one prefix's queries alternating between them get the rate once."""
    fds, maps = memfds(), mapped()
    clock = Clock()
    config = RrlConfig(rate=10, exempt=())
    shared = RrlTable.create_shared(config.table_size)
    assert shared.fd is not None
    attached = RrlTable.attach(os.dup(shared.fd))  # a worker gets the descriptor, maps, closes
    assert memfds() == fds + 3 and mapped() == maps + 2  # the creator's and each mmap's own dup
    one = ResponseRateLimiter(config, clock, shared)
    two = ResponseRateLimiter(config, clock, attached)
    verdicts = [(one if n % 2 else two).check(HOSTS[0], NOERROR) for n in range(40)]
    assert verdicts.count(Verdict.SEND) == 10
    assert one.limited + two.limited == 30 and one.accounts == two.accounts == 1
    attached.close()
    shared.close()
    assert memfds() == fds and mapped() == maps


def test_a_descriptor_that_is_no_table_is_refused() -> None:
    fd = os.memfd_create("not-rrl")
    os.ftruncate(fd, 4096)
    with pytest.raises(ValueError, match="not an RRL table"):
        RrlTable.attach(fd)
