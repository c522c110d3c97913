"""A GeoIP database path that is not a file must not freeze the process.

``maxminddb``'s C reader opens its path holding the GIL: a FIFO there froze DNS, xDS and the API
together. Now the path is checked and read by a helper thread with a deadline, the error is
logged, the database read before keeps serving, and DNS answers throughout.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import httpx

from controlplane.errors import GtmError
from controlplane.gtm.geo_load import GeoDatabases, bounded
from controlplane.policy.loader import load_directory
from tests.support.gtm_helpers import write_mmdb
from tests.support.ubiq_serve import EU, US, Asking, query, serving, wait_until, write_policy

GEO_EXTRA = """\
  clientGroups:
  - {name: europe, cidrs: [127.0.20.0/24], region: eu-west}
  geoDatabase: regions.mmdb
"""
GEOIP_SUBNET = "127.0.40.0/24"  # only the database knows this network: us-west


def test_dns_keeps_answering_while_the_geoip_database_is_a_fifo(tmp_path: Path) -> None:
    root = tmp_path / "policies"
    write_policy(root, GEO_EXTRA, strategy="geo")
    mmdb = write_mmdb(root / "regions.mmdb", [(GEOIP_SUBNET, {"region": "us-west"})])
    with serving(root, tmp_path) as served:
        port = served.dns_port
        assert query(port, timeout=2, subnet=GEOIP_SUBNET) == [US]
        with Asking(port, timeout=0.5, subnet=GEOIP_SUBNET) as asking:
            mmdb.unlink()
            os.mkfifo(mmdb)
            policy = root / "policy.yaml"
            policy.write_text(policy.read_text().replace("ttl: 5s", "ttl: 6s"))  # re-plan
            try:
                wait_until(
                    lambda: "is a FIFO (named pipe), not a regular file" in served.log_text(),
                    30,
                    "the GTM to report the FIFO",
                )
            except AssertionError:
                raise AssertionError(
                    f"no FIFO report; ubiq serve's log ends:\n{served.log_text()[-3000:]}"
                ) from None
            asking.more_answers(20)
            assert httpx.get(f"{served.api}/v1/policy/status", timeout=2).status_code == 200
        total = asking.answered + asking.timeouts
        assert asking.timeouts == 0, f"{asking.timeouts} of {total} queries timed out"
        assert query(port, timeout=2, subnet=GEOIP_SUBNET) == [US]  # the database read before
        assert query(port, timeout=2, subnet="127.0.20.0/24") == [EU]
        assert served.status()["generation"] == 2  # the edit was applied


def test_a_read_that_never_returns_is_abandoned_with_a_clear_error() -> None:
    release = threading.Event()
    try:
        bounded(lambda: release.wait(30), "GeoIP database '/mnt/hung/geo.mmdb'", 0.2)
        raise AssertionError("a hung read was waited for")
    except GtmError as exc:
        assert str(exc) == (
            "GeoIP database '/mnt/hung/geo.mmdb': no answer within 0.2s (hung mount?); not used"
        )
    finally:
        release.set()


def test_a_fifo_never_read_leaves_no_groups_and_one_error(tmp_path: Path) -> None:
    fifo = tmp_path / "geo.mmdb"
    os.mkfifo(fifo)
    write_policy(tmp_path / "policies", f"  geoDatabase: {fifo}\n")
    geo = GeoDatabases().load(load_directory(tmp_path / "policies"))
    assert geo.groups == ()
    assert geo.errors == (
        f"GeoIP database {str(fifo)!r} is a FIFO (named pipe), not a regular file; not read",
    )
