"""``ubiq dns explain``."""

from __future__ import annotations

import argparse
import sys

from controlplane.cli.common import load_or_report
from controlplane.errors import UbiqError


def cmd_dns_explain(args: argparse.Namespace) -> int:
    import ipaddress

    from controlplane.gtm.explain import explain
    from controlplane.gtm.geo_load import GeoDatabases
    from controlplane.gtm.plan import GtmConfig, decide, plan_from_model
    from controlplane.gtm.types import HealthView

    try:
        ipaddress.ip_address(args.client)
    except ValueError:
        raise UbiqError(f"--client: expected an IP address, got {args.client!r}") from None
    model = load_or_report(args.directory)
    if model is None:
        return 1
    health = HealthView(frozenset())
    geo = GeoDatabases().load(model)
    for error in geo.errors:
        print(f"warning: {error}; using the CIDR client groups", file=sys.stderr)
    plan = decide(plan_from_model(model, GtmConfig(), geo.groups), health, epoch=1)
    name = args.name.rstrip(".").lower()
    policy = plan.policies.get(name)
    if policy is None:
        known = ", ".join(sorted(plan.policies)) or "none"
        raise UbiqError(f"no GlobalService serves {args.name!r} (served names: {known})")
    group = plan.group_for(args.client)
    print(explain(policy, group, health, plan.decisions[(name, group.name)], client=args.client))
    return 0
