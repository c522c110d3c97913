"""The reference for shared compile units: every node group compiled alone, as before
``compiler.shared`` (no ``RoundShare``), each snapshot built fresh with one round's EntryMemo."""

from __future__ import annotations

import itertools

from controlplane.policy.model import Model
from controlplane.xds.compiler.effective import Decisions
from controlplane.xds.compiler.generate import compile_node
from controlplane.xds.compiler.options import CompileOptions, NodeIdentity
from controlplane.xds.node import DEFAULT_ROLE, PROXYLESS_ROLE, group_key
from controlplane.xds.snapshot import EntryMemo, Snapshot


def per_group_snapshots(
    model: Model, options: CompileOptions, decisions: Decisions | None = None
) -> dict[str, Snapshot]:
    memo = EntryMemo()
    out: dict[str, Snapshot] = {}
    roles = (DEFAULT_ROLE, PROXYLESS_ROLE) if model.grpc_services else (DEFAULT_ROLE,)
    for (name, cluster), role in itertools.product(model.clusters.items(), roles):
        node = NodeIdentity(name, cluster.spec.region, cluster.spec.zone or "", role)
        compilation = compile_node(model, node, options, decisions=decisions)
        snapshot = Snapshot.build(compilation.resources, memo=memo)
        snapshot.check_consistent()
        out[group_key(name, role)] = snapshot
    return out
