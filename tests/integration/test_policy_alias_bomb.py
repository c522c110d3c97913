"""Alias bombs: few nodes, huge expansion. Rejected with file:line in bounded memory, and a
running `ubiq serve` keeps answering DNS while it rejects one."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import pytest

from controlplane.errors import PolicyError
from controlplane.policy.loader import load_texts
from controlplane.policy.yamlsource import MAX_EXPANDED_BYTES, MAX_NODES
from tests.support.ubiq_serve import EU, Asking, query, serving, wait_until, write_policy

PER_QUERY_TIMEOUT = 0.05  # each DNS query must be answered within 50 ms


def bomb(copies: int = 2_000, size: int = 100_000) -> str:
    """One ``size``-character string re-used ``copies`` times (200 MB expanded), far under the node
    limit: before the byte budget this 131 KB file validated after peaking at 467 MB."""
    assert copies + 10 < MAX_NODES
    keys = "\n".join(f"    k{i}: *big" for i in range(copies))
    return (
        "apiVersion: ubiq.io/v1alpha1\nkind: Cluster\nmetadata:\n  name: bomb\n  annotations:\n"
        f'    big: &big "{"x" * size}"\n{keys}\nspec: {{region: eu-west}}\n'
    )


def test_an_alias_bomb_is_rejected_with_its_line_in_bounded_memory() -> None:
    text = bomb()
    tracemalloc.start()
    try:
        with pytest.raises(PolicyError) as caught:
            load_texts([("bomb.yaml", text)])
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    (problem,) = caught.value.problems
    assert problem.file == "bomb.yaml" and problem.line == 6
    assert f"expands to more than {MAX_EXPANDED_BYTES} bytes" in problem.message
    # the expansion would be 200 MB; what the rejection holds is a small multiple of the file
    assert peak < 20 * len(text), f"peak {peak} bytes for a {len(text)}-byte file"


def test_text_under_the_byte_budget_still_loads_through_aliases() -> None:
    shared = "y" * 1000
    refs = ",".join(["*s"] * 100)
    text = (
        "apiVersion: ubiq.io/v1alpha1\nkind: Cluster\nmetadata: {name: c}\n"
        f'spec: {{region: r, labels: {{a: &s "{shared}"}}, taints: []}}\n'
        f"x-unused: [{refs}]\n"
    )
    with pytest.raises(PolicyError) as caught:  # unknown top-level field, not the budget
        load_texts([("ok.yaml", text)])
    assert all("expands" not in p.message for p in caught.value.problems)


def test_dns_answers_within_50_ms_throughout_a_rejected_bomb(tmp_path: Path) -> None:
    root = tmp_path / "policies"
    write_policy(root)
    with serving(root, tmp_path) as served:
        assert query(served.dns_port, timeout=2) == [EU]
        with Asking(served.dns_port, timeout=PER_QUERY_TIMEOUT) as asking:
            asking.more_answers(20)  # answering before the bomb
            temp = root / ".bomb.yaml.tmp"
            temp.write_text(bomb())
            temp.rename(root / "bomb.yaml")  # one event, the whole file at once

            def rejected() -> bool:
                problems = served.status()["problems"]
                assert isinstance(problems, list)
                return any("expands to more than" in p for p in problems)

            wait_until(rejected, 60, "the bomb to be rejected")
            asking.more_answers(20)  # and after it
        total = asking.answered + asking.timeouts
        assert asking.timeouts == 0, f"{asking.timeouts} of {total} queries timed out"
        status = served.status()
        assert status["ok"] is False and status["rejected"] == 1
        assert query(served.dns_port, timeout=2) == [EU]  # the last good policy still serves
