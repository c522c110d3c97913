"""Render deploy/ from templates/deploy/ (``--check``: only report drift, exit 1 if any)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from controlplane.deploy.manifests import (
    DeployValues,
    differences,
    render_tree,
    repo_root,
    write_tree,
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m controlplane.deploy", description=__doc__)
    parser.add_argument(
        "--check", action="store_true", help="report files that differ; write nothing"
    )
    parser.add_argument("--out", type=Path, help="default: the repository's deploy/")
    args = parser.parse_args(argv)
    repo = repo_root()
    out = args.out or repo / "deploy"
    tree = render_tree(DeployValues(), repo)
    if args.check:
        stale = differences(tree, out)
        for name in stale:
            print(f"deploy/{name}: differs from its template (run `make deploy`)", file=sys.stderr)
        return 1 if stale else 0
    for name in write_tree(tree, out):
        print(f"wrote {out / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
