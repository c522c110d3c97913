"""Response-rate limiting, the pure part: token buckets per prefix and kind, slip, bounded table."""

from __future__ import annotations

import dns.flags
import dns.message
import pytest

from controlplane.errors import UbiqError
from controlplane.gtm.dns.answer import Client, answer
from controlplane.gtm.dns.rcodes import NOERROR, NXDOMAIN, REFUSED
from controlplane.gtm.dns.rrl import ResponseRateLimiter, RrlConfig, Verdict, truncate
from tests.support.dns import ORIGIN, sample_table


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def limiter(**kwargs: object) -> tuple[ResponseRateLimiter, Clock]:
    clock = Clock()
    config = RrlConfig(**{"rate": 5, "slip": 2, "window": 4.0, "exempt": (), **kwargs})  # type: ignore[arg-type]
    return ResponseRateLimiter(config, clock), clock


def verdicts(
    rrl: ResponseRateLimiter, host: str, count: int, rcode: int = NOERROR
) -> list[Verdict]:
    return [rrl.check(host, rcode) for _ in range(count)]


def test_a_prefix_gets_its_rate_then_every_second_limited_response_slips() -> None:
    rrl, _ = limiter()
    got = verdicts(rrl, "192.0.2.1", 11)
    assert got[:5] == [Verdict.SEND] * 5
    assert got[5:] == [Verdict.DROP, Verdict.SLIP] * 3
    assert (rrl.limited, rrl.slipped, rrl.dropped) == (6, 3, 3)


def test_the_whole_prefix_shares_one_account_and_other_prefixes_are_untouched() -> None:
    rrl, _ = limiter()
    assert verdicts(rrl, "192.0.2.1", 5) == [Verdict.SEND] * 5
    assert rrl.check("192.0.2.200", NOERROR) is not Verdict.SEND  # same /24
    assert verdicts(rrl, "192.0.3.1", 5) == [Verdict.SEND] * 5  # another /24
    assert verdicts(rrl, "2001:db8:0:1::1", 5) == [Verdict.SEND] * 5
    assert rrl.check("2001:db8:0:ff::2", NOERROR) is not Verdict.SEND  # same /56
    assert rrl.check("2001:db8:0:100::1", NOERROR) is Verdict.SEND  # another /56


def test_answers_nxdomain_and_errors_are_accounted_apart() -> None:
    rrl, _ = limiter(nxdomain_rate=2, error_rate=1)
    assert verdicts(rrl, "192.0.2.1", 5) == [Verdict.SEND] * 5
    assert verdicts(rrl, "192.0.2.1", 3, NXDOMAIN)[:2] == [Verdict.SEND] * 2
    assert rrl.check("192.0.2.1", NXDOMAIN) is not Verdict.SEND
    assert rrl.check("192.0.2.1", REFUSED) is Verdict.SEND
    assert rrl.check("192.0.2.1", REFUSED) is not Verdict.SEND


def test_credit_comes_back_at_the_rate_and_debt_is_capped_by_the_window() -> None:
    rrl, clock = limiter()
    verdicts(rrl, "192.0.2.1", 1000)  # a long flood: debt capped at rate * window = 20
    clock.now += 1.0  # +5 credits: still in debt
    assert rrl.check("192.0.2.1", NOERROR) is not Verdict.SEND
    clock.now += 5.0  # the debt (20 + 1) repaid: credit back to a one-second burst (5)
    assert verdicts(rrl, "192.0.2.1", 5) == [Verdict.SEND] * 5
    assert rrl.check("192.0.2.1", NOERROR) is not Verdict.SEND
    clock.now += 0.5  # 2.5 credits: the debt of the limited one (1) repaid, one more to spend
    assert rrl.check("192.0.2.1", NOERROR) is Verdict.SEND


def test_slip_zero_drops_all_and_slip_one_truncates_all() -> None:
    rrl, _ = limiter(slip=0)
    assert set(verdicts(rrl, "192.0.2.1", 20)[5:]) == {Verdict.DROP}
    rrl, _ = limiter(slip=1)
    assert set(verdicts(rrl, "192.0.2.1", 20)[5:]) == {Verdict.SLIP}


def test_exempt_networks_and_a_zero_rate_are_never_limited() -> None:
    rrl, _ = limiter(exempt=("127.0.0.0/8", "::1/128"))
    assert set(verdicts(rrl, "127.0.0.1", 50)) == {Verdict.SEND}
    assert set(verdicts(rrl, "::1", 50)) == {Verdict.SEND}
    assert rrl.accounts == 0
    rrl, _ = limiter(error_rate=0)
    assert set(verdicts(rrl, "192.0.2.1", 50, REFUSED)) == {Verdict.SEND}


def test_the_table_is_bounded_and_a_busy_flooder_survives_forged_churn() -> None:
    rrl, _ = limiter(table_size=100)
    verdicts(rrl, "198.51.100.7", 10)  # the flooder, in debt
    for i in range(10_000):  # forged sources, each from its own /24, between its queries
        rrl.check(f"10.{i // 256 % 256}.{i % 256}.1", NOERROR)
        if i % 50 == 0:
            assert rrl.check("198.51.100.7", NOERROR) is not Verdict.SEND
        assert rrl.accounts <= 100
    assert rrl.evicted > 9_000


def test_garbage_addresses_are_answered_not_crashed_on() -> None:
    rrl, _ = limiter()
    for host in ("", "not-an-ip", "fe80::1%eth0", "::ffff:192.0.2.1", "300.1.1.1"):
        rrl.check(host, NOERROR)


@pytest.mark.parametrize(
    ("field", "value"),
    [("rate", -1), ("slip", -2), ("window", 0), ("ipv4_prefix", 33), ("ipv6_prefix", 129)],
)
def test_bad_settings_are_one_clear_error(field: str, value: float) -> None:
    with pytest.raises(UbiqError, match=field.replace("_", " ")):
        RrlConfig(**{field: value})  # type: ignore[arg-type]
    with pytest.raises(UbiqError, match="exempt: expected a network, got 'x'"):
        RrlConfig(exempt=("x",))


def test_a_slipped_response_is_the_question_with_tc_and_nothing_else() -> None:
    table = sample_table()
    for name, rtype in ((f"app.{ORIGIN}", "A"), (f"nope.{ORIGIN}", "A"), ("other.example", "A")):
        query = dns.message.make_query(name, rtype, use_edns=0)
        full = answer(query.to_wire(), table, Client("192.0.2.1"))
        assert full is not None
        short = dns.message.from_wire(truncate(full))
        assert short.id == query.id and short.flags & dns.flags.TC
        assert short.rcode() == dns.message.from_wire(full).rcode()
        assert short.question == query.question
        assert not short.answer and not short.authority and not short.additional
    header_only = bytes.fromhex("12348101") + bytes(8)  # FORMERR, no question
    assert truncate(header_only) == bytes.fromhex("12348301") + bytes(8)


def test_filter_passes_slips_or_drops_whole_responses() -> None:
    rrl, _ = limiter(rate=1)
    table = sample_table()
    wire = answer(dns.message.make_query(f"app.{ORIGIN}", "A").to_wire(), table, Client("x"))
    assert wire is not None
    assert rrl.filter(wire, "192.0.2.1") == wire
    assert rrl.filter(wire, "192.0.2.1") is None
    assert rrl.filter(wire, "192.0.2.1") == truncate(wire)
