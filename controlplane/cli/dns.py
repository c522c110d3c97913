"""``ubiq dns explain``: what a client would get for a name, and why; from a policy directory
(no server needed) or from a running server's live state (``--api``)."""

from __future__ import annotations

import argparse
import ipaddress
import sys
from typing import Any

from controlplane.cli.api_client import get_json, target
from controlplane.cli.common import load_or_report
from controlplane.cli.output import emit
from controlplane.errors import UbiqError


def cmd_dns_explain(args: argparse.Namespace) -> int:
    from controlplane.gtm.explain import explain_text

    try:
        ipaddress.ip_address(args.client)
    except ValueError:
        raise UbiqError(f"--client: expected an IP address, got {args.client!r}") from None
    if args.api is not None:
        data = get_json(target(args), "/v1/gtm/explain", {"name": args.name, "client": args.client})
    else:
        found = _explain_offline(args)
        if found is None:
            return 1
        data = found
    from controlplane.api.keys import camelize, snakeize

    # JSON/YAML in the API's camelCase whichever way it was made; the text renderer reads snake_case
    emit(camelize(data), args.format, lambda: explain_text(snakeize(data)))
    return 0


def _explain_offline(args: argparse.Namespace) -> dict[str, Any] | None:
    """Every target taken as healthy (no health checks run offline)."""
    from controlplane.gtm.explain import explain_dict, served_name
    from controlplane.gtm.geo_load import GeoDatabases
    from controlplane.gtm.placed import as_placed, place_groups
    from controlplane.gtm.plan import GtmConfig, decide, plan_from_model
    from controlplane.gtm.types import HealthView
    from controlplane.placement.consumers import decided_services
    from controlplane.placement.engine import decide_all

    model = load_or_report(args.directory)
    if model is None:
        return None
    health = HealthView(frozenset())
    geo = GeoDatabases().load(model)
    for error in geo.errors:
        print(f"warning: {error}; using the CIDR client groups", file=sys.stderr)
    base = plan_from_model(model, GtmConfig(), geo.groups)
    # the placement step as `ubiq serve` runs it without signals: every cluster healthy
    decisions = decide_all(model, now=0.0, services=decided_services(model))
    choices = place_groups(base, model, decisions, now=0.0)
    plan = decide(base, health, epoch=1, placed=as_placed(choices))
    served = served_name(plan.policies, plan.zones, args.name)
    if served is None:
        known = ", ".join(sorted(plan.policies)) or "none"
        raise UbiqError(f"no GlobalService serves {args.name!r} (served names: {known})")
    name, alias = served
    group = plan.group_for(args.client)
    decision = plan.decisions[(name, group.name)]
    return explain_dict(
        plan.policies[name], group, health, decision, client=args.client, alias=alias
    )
