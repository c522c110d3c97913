"""A replica that only campaigns and, while it leads, publishes a counter decision.

Run as ``python -m tests.support.leader_proc ETCD_ENDPOINT,... PREFIX NAME TTL``; the leader
election tests start several and kill the leader.
"""

from __future__ import annotations

import asyncio
import sys

from controlplane.etcd.client import EtcdClient
from controlplane.replica.leader import LeaderElection, NotLeader, publish_decision


async def main(endpoints: str, prefix: str, name: str, ttl_s: int) -> None:
    client = EtcdClient(endpoints.split(","))
    election = LeaderElection(client, prefix, name, ttl_s=ttl_s)
    while True:
        leadership = await election.campaign()
        print(f"LEADER {name}", flush=True)
        count = 0
        while not election.lost.is_set():
            count += 1
            try:
                await publish_decision(
                    client, prefix, leadership, "counter", {"by": name, "n": count}
                )
            except NotLeader:
                break
            await asyncio.sleep(0.1)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])))
