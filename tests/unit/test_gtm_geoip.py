"""Client network -> region from a CIDR table and from a tiny MaxMind DB built by the test."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any

import pytest

from controlplane.errors import GtmError
from controlplane.gtm.geoip import CidrRegions, MaxMindRegions, groups_from_regions
from tests.support.gtm_helpers import write_mmdb


@pytest.fixture
def mmdb(tmp_path: Path) -> Path:
    eu: dict[str, Any] = {"region": "eu-west", "continent": {"code": "EU"}}
    networks = [
        ("203.0.113.0/25", eu),
        ("203.0.113.128/25", eu),
        ("198.51.100.0/24", {"region": "us-west", "continent": {"code": "NA"}}),
        ("2001:db8:1::/48", {"region": "ap-south", "continent": {"code": "AS"}}),
        ("192.0.2.0/24", {"other": 1}),
    ]
    return write_mmdb(tmp_path / "regions.mmdb", networks)


def test_maxmind_lookup_gives_region_and_prefix(mmdb: Path) -> None:
    with MaxMindRegions(mmdb) as db:
        assert db.database_type == "Ubiq-Test"
        m = db.lookup("203.0.113.7")
        assert m is not None and m.region == "eu-west"
        assert m.network == ipaddress.ip_network("203.0.113.0/25")
        m6 = db.lookup(ipaddress.ip_address("2001:db8:1::42"))
        assert m6 is not None and m6.region == "ap-south" and m6.network.prefixlen == 48
        assert db.lookup("10.1.2.3") is None
        assert db.lookup("192.0.2.1") is None  # record without the field


def test_maxmind_field_path_and_mapping(mmdb: Path) -> None:
    mapping = {"EU": "europe", "NA": "americas"}
    with MaxMindRegions(mmdb, field=("continent", "code"), mapping=mapping) as db:
        assert db.lookup("203.0.113.200").region == "europe"  # type: ignore[union-attr]
        assert db.lookup("198.51.100.1").region == "americas"  # type: ignore[union-attr]
        assert db.lookup("2001:db8:1::1") is None  # AS is not mapped


def test_groups_from_maxmind_collapse_networks(mmdb: Path) -> None:
    with MaxMindRegions(mmdb) as db:
        groups = groups_from_regions(db, prefix="geo-")
    by_name = {g.name: g for g in groups}
    assert set(by_name) == {"geo-eu-west", "geo-us-west", "geo-ap-south"}
    assert by_name["geo-eu-west"].networks == (ipaddress.ip_network("203.0.113.0/24"),)
    assert by_name["geo-eu-west"].region == "eu-west"
    with MaxMindRegions(mmdb) as db:
        only = groups_from_regions(db, regions=["us-west"])
    assert [g.name for g in only] == ["us-west"]


def test_bad_database_is_a_gtm_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.mmdb"
    bad.write_bytes(b"not a database")
    with pytest.raises(GtmError, match=r"bad\.mmdb"):
        MaxMindRegions(bad)
    with pytest.raises(GtmError):
        MaxMindRegions(tmp_path / "missing.mmdb")


def test_cidr_longest_prefix_wins() -> None:
    table = CidrRegions({"eu-west": ["203.0.113.0/24"], "eu-central": ["203.0.113.64/26"]})
    assert table.lookup("203.0.113.70").region == "eu-central"  # type: ignore[union-attr]
    assert table.lookup("203.0.113.7").region == "eu-west"  # type: ignore[union-attr]
    assert table.lookup("2001:db8::1") is None
    groups = groups_from_regions(table)
    assert [g.name for g in groups] == ["eu-central", "eu-west"]
