"""/metrics counts exactly what the per-query parse of every sent response counted before the
packet cache kept a tally per entry: a real ``ubiq serve`` (UDP in the main process, and in a
DNS worker) gets a mix of queries from several loopback sources -- repeated ones (cache hits),
new ones (misses), ECS and not, odd types, malformed packets, and a flood that response-rate
limiting slips (TC=1) and drops -- and the counters it shows must equal those of the frozen old
``observe`` fed with each response exactly as the client received it (None for no response)."""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterator
from pathlib import Path

import dns.edns
import dns.message
import dns.rdatatype
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from controlplane.gtm.dns.metrics import QTYPES
from controlplane.gtm.dns.rcodes import LABELS as RCODE_LABELS
from tests.support.dns_metrics_reference import ReferenceCounts
from tests.support.poll import wait_until
from tests.support.ubiq_serve import NAME, serving, write_policy

RATE = 100  # per prefix and kind: the plain sources stay under it, the flood does not
SOURCES = ("127.0.3.1", "127.0.4.1", "127.0.5.1")  # three /24s, each sends MIX twice
FLOODER = "127.0.6.1"
FLOOD = 400  # back to back, far past a one-second burst of RATE

Sample = tuple[str, tuple[tuple[str, str], ...]]


def wire(name: str, rdtype: str | int, ecs: str | None = None, edns: bool = False) -> bytes:
    options: list[dns.edns.Option] = []
    if ecs is not None:
        address, _, prefix = ecs.partition("/")
        options.append(dns.edns.ECSOption(address, int(prefix)))
    use_edns = 0 if edns or options else None
    qtype = dns.rdatatype.RdataType.make(rdtype)
    return dns.message.make_query(name, qtype, use_edns=use_edns, options=options).to_wire()


def mix() -> list[bytes]:
    """Answers, NODATA, NXDOMAIN, REFUSED, the zone apex, an unlisted type, with and without
    EDNS and ECS (IPv4 and IPv6 subnets), then packets the server refuses or cannot read."""
    out = []
    for name, rdtype in (
        (NAME, "A"),
        (NAME, "AAAA"),
        ("nope.gtm.example", "A"),
        ("gtm.example", "SOA"),
        ("gtm.example", "NS"),
        ("elsewhere.example", "A"),
        (NAME, 777),  # counted as OTHER
    ):
        out.append(wire(name, rdtype))
        out.append(wire(name, rdtype, edns=True))
        out.append(wire(name, rdtype, "192.0.2.0/24"))
        out.append(wire(name, rdtype, "2001:db8::/56"))
    plain = wire(NAME, "A")
    out += [
        plain[:7],  # shorter than a header: no response
        plain[:2] + bytes([plain[2] | 0x80]) + plain[3:],  # a response (QR): ignored
        plain[:2] + bytes([plain[2] | 0x28]) + plain[3:],  # opcode UPDATE: NOTIMP
        plain[:5] + b"\x02" + plain[6:],  # QDCOUNT 2, one question: FORMERR
        plain[:20],  # the name cut short
        wire(NAME, "A", edns=True)[:-1] + b"\x01",  # a bad OPT record
        bytes(range(40)),
    ]
    return out


def with_id(query: bytes, qid: int) -> bytes:
    return (qid & 0xFFFF).to_bytes(2) + query[2:]


def samples(api: str) -> dict[Sample, float]:
    text = httpx.get(f"{api}/metrics", timeout=5).text
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def served_counts(before: dict[Sample, float], after: dict[Sample, float]) -> dict[Sample, float]:
    """What the run added to the families the reference knows; answers by address only (the
    reference knows no regions)."""
    families = (
        "ubiq_dns_requests_total",
        "ubiq_dns_responses_total",
        "ubiq_dns_dropped_total",
        "ubiq_dns_truncated_total",
        "ubiq_dns_request_duration_seconds_count",
    )
    out: dict[Sample, float] = {}
    for (name, labels), value in after.items():
        delta = value - before.get((name, labels), 0.0)
        if name in families:
            key: Sample = (name, labels)
        elif name == "ubiq_dns_answers_total":
            key = (name, tuple(kv for kv in labels if kv[0] == "address"))
        else:
            continue
        if delta:
            out[key] = out.get(key, 0.0) + delta
    return out


def reference_counts(ref: ReferenceCounts) -> dict[Sample, float]:
    out: dict[Sample, float] = {}

    def add(name: str, n: int, **labels: str) -> None:
        key = (name, tuple(sorted(labels.items())))
        out[key] = out.get(key, 0.0) + n

    for (proto, qtype, rcode, address), n in ref.responses.items():
        qname = QTYPES.get(qtype, "OTHER")
        add("ubiq_dns_requests_total", n, proto=proto, type=qname)
        rcode_label = RCODE_LABELS.get(rcode, str(rcode))
        add("ubiq_dns_responses_total", n, proto=proto, type=qname, rcode=rcode_label)
        if address is not None:
            add("ubiq_dns_answers_total", n, address=str(ipaddress.ip_address(address)))
    for proto, n in ref.dropped.items():
        add("ubiq_dns_requests_total", n, proto=proto, type="NONE")
        add("ubiq_dns_dropped_total", n, proto=proto)
    if ref.truncated:
        add("ubiq_dns_truncated_total", ref.truncated)
    for qtype, n in ref.durations.items():
        add("ubiq_dns_request_duration_seconds_count", n, type=QTYPES.get(qtype, "OTHER"))
    return out


def udp_socket(source: str) -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    s.bind((source, 0))
    return s


def drain(s: socket.socket) -> Iterator[bytes]:
    s.setblocking(False)
    while True:
        try:
            yield s.recv(65535)
        except BlockingIOError:
            return


def tcp_exchange(port: int, query: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(len(query).to_bytes(2) + query)
        data = b""
        while len(data) < 2 or len(data) < 2 + int.from_bytes(data[:2]):
            chunk = s.recv(65535)
            assert chunk, "TCP connection closed before the response"
            data += chunk
        return data[2:]


@pytest.mark.parametrize("workers", ["0", "1"])
def test_metrics_equal_the_old_per_query_count(tmp_path: Path, workers: str) -> None:
    write_policy(tmp_path / "policies")
    flags = (
        "--dns-workers", workers, "--dns-rrl-rate", str(RATE), "--dns-rrl-window", "60",
        "--dns-rrl-exempt", "none",
    )  # fmt: skip
    with serving(tmp_path / "policies", tmp_path, *flags) as served:
        api, port = served.api, served.dns_port
        before = samples(api)
        ref = ReferenceCounts()
        sockets = {source: udp_socket(source) for source in (*SOURCES, FLOODER)}
        sent = 0
        qid = 0
        try:
            for _ in range(2):  # the second round: the same bytes after the ID, cache hits
                for source in SOURCES:
                    for query in mix():
                        qid += 1
                        sockets[source].sendto(with_id(query, qid), ("127.0.0.1", port))
                        sent += 1
            flood = (wire(NAME, "A", "198.51.100.0/24"), wire("nope.gtm.example", "A"))
            for i in range(FLOOD):
                qid += 1
                sockets[FLOODER].sendto(with_id(flood[i % 2], qid), ("127.0.0.1", port))
                sent += 1

            def udp_counted() -> bool:
                now = samples(api)
                return sent == sum(
                    v - before.get(k, 0.0)
                    for k, v in now.items()
                    if k[0] == "ubiq_dns_requests_total" and ("proto", "udp") in k[1]
                )

            # every query counted: every response sent is in the sockets (sent before counted)
            wait_until(udp_counted, 30, f"{sent} UDP queries counted in /metrics")
            received = 0
            for s in sockets.values():
                for response in drain(s):
                    ref.observe("udp", response)
                    received += 1
            for _ in range(sent - received):
                ref.observe("udp", None)
        finally:
            for s in sockets.values():
                s.close()
        ref.observe("tcp", tcp_exchange(port, wire(NAME, "A", "192.0.2.0/24")))
        wait_until(
            lambda: (
                samples(api).get(
                    ("ubiq_dns_requests_total", (("proto", "tcp"), ("type", "A"))), 0.0
                )
                > before.get(("ubiq_dns_requests_total", (("proto", "tcp"), ("type", "A"))), 0.0)
            ),
            30,
            "the TCP query counted",
        )
        after = samples(api)

    def delta(name: str) -> float:
        return after.get((name, ()), 0.0) - before.get((name, ()), 0.0)

    # the mix took every path: cache hits and misses, RRL slips and drops, malformed packets
    assert delta("ubiq_dns_packet_cache_hits_total") > 0
    assert delta("ubiq_dns_packet_cache_misses_total") > 0
    assert delta("ubiq_dns_rrl_slipped_total") > 0 and delta("ubiq_dns_rrl_dropped_total") > 0
    assert ref.truncated >= delta("ubiq_dns_rrl_slipped_total")
    assert ref.dropped["udp"] > delta("ubiq_dns_rrl_dropped_total")  # the malformed ones too
    assert any(rcode == 1 for _, _, rcode, _ in ref.responses)  # FORMERR
    assert served_counts(before, after) == reference_counts(ref)
