"""TableStats against a private Open vSwitch: the counts ovs-ofctl reports, over one connection."""

from __future__ import annotations

import os
import re
import secrets
import subprocess

import pytest

from routeflow.bench import tablestats
from routeflow.bench.tablestats import StatsError, TableStats
from routeflow.lab.ovs import OvsInstance
from routeflow.lab.procs import ProcessSet


@pytest.fixture(scope="module")
def ovs(tmp_path_factory):
    ns = f"tstat-{secrets.token_hex(3)}"
    procs = ProcessSet()
    subprocess.run(["ip", "netns", "add", ns], check=True, timeout=10)
    try:
        ovs = OvsInstance(str(tmp_path_factory.mktemp("ovs")), procs)
        ovs.start(
            popen=lambda argv, **kw: subprocess.Popen(
                ["ip", "netns", "exec", ns, *argv], start_new_session=True, **kw
            )
        )
        yield ovs
    finally:
        tablestats.close_all()
        procs.stop_all()
        subprocess.run(["ip", "netns", "delete", ns], timeout=10, check=False)


def bridge(ovs: OvsInstance, name: str, protocols: str = "OpenFlow13") -> str:
    ovs.vsctl(
        "add-br", name, "--", "set", "bridge", name, "datapath_type=netdev",
        "fail-mode=secure", f"protocols={protocols}",
    )  # fmt: skip
    return name


def ofctl_counts(ovs: OvsInstance, name: str) -> dict[int, int]:
    out = ovs.ofctl("-O", "OpenFlow13", "dump-tables", name)
    return {int(t): int(n) for t, n in re.findall(r"table (\d+):\s*\n\s*active=(\d+)", out)}


def test_counts_match_ovs_ofctl_and_follow_changes(ovs):
    name = bridge(ovs, "tsa")
    flows = "\n".join(
        f"table=1,priority=1000,ip,nw_dst=10.{i}.0.0/16,actions=drop" for i in range(5)
    )
    subprocess.run(
        ["ovs-ofctl", "-O", "OpenFlow13", "add-flows", name, "-"],
        input=flows, text=True, check=True, env={**os.environ, **ovs.env},
    )  # fmt: skip
    ovs.ofctl("-O", "OpenFlow13", "add-flow", name, "table=0,priority=1,actions=drop")
    with TableStats.of_bridge(ovs.rundir, name) as stats:
        counts = stats.active()
        assert counts[1] == 5 and counts[0] == 1
        assert {t: n for t, n in counts.items() if n} == {
            t: n for t, n in ofctl_counts(ovs, name).items() if n
        }
        ovs.ofctl("-O", "OpenFlow13", "del-flows", name, "table=1,ip,nw_dst=10.0.0.0/16")
        assert stats.active()[1] == 4  # the same connection sees the change
    assert tablestats.table_active(ovs.rundir, name, 1) == 4
    assert tablestats.table_active(ovs.rundir, name, 1) == 4  # kept, asked again


def test_a_bridge_without_openflow13_is_a_clear_error(ovs):
    name = bridge(ovs, "tsb", protocols="OpenFlow10")
    with pytest.raises(StatsError, match=r"does not speak OpenFlow 1\.3|closed the connection"):
        TableStats.of_bridge(ovs.rundir, name).active()
    assert tablestats.table_active(ovs.rundir, name, 1) is None


def test_no_such_bridge_gives_none_for_the_fallback(ovs):
    assert tablestats.table_active(ovs.rundir, "nosuchbr", 1) is None
