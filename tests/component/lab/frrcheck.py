"""FRR's own configuration check (`<daemon> -C`), leaving nothing behind.

Even a daemon that only checks a file makes /var/tmp/frr/<daemon>.<pid> and never
removes it. Each check therefore runs in a mount namespace of its own, with
directories of the test bind-mounted over FRR's shared ones (as lab VMs do,
see runner.FRR_PRIVATE_DIRS), so whatever it writes lands in the test's tmp_path.

The daemon reads the file as user frr, which cannot enter pytest's tmp_path
(mode 700): the file is put in the private run directory and named by its path
inside the namespace. A daemon that cannot read its file says so and still exits
0, which would make every check pass; check_config fails loudly instead.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from routeflow.lab.runner import FRR_DIR, FRR_PRIVATE_DIRS

# Mount the test's directories over FRR's, inside the new namespace only, then run the daemon.
_PRIVATE = 'mount --make-rprivate / && mount --bind "$1" "$2" && mount --bind "$3" "$4" && shift 4'


def check_config(daemon: str, conf: Path, tmp_path: Path) -> subprocess.CompletedProcess:
    """Run ``daemon -C -f conf``; its output and exit status are the verdict."""
    binds: list[str] = []
    for target, (name, mode) in FRR_PRIVATE_DIRS.items():
        if not os.path.isdir(target):  # FRR's own, as its first daemon would make it
            os.makedirs(target, mode=mode)
            shutil.chown(target, "frr", "frr")
        source = tmp_path / name
        source.mkdir(exist_ok=True)
        shutil.chown(source, "frr", "frr")
        source.chmod(mode)
        binds += [str(source), target]
    run_dir, run_source = "/var/run/frr", tmp_path / FRR_PRIVATE_DIRS["/var/run/frr"][0]
    shutil.copyfile(conf, run_source / conf.name)
    shutil.chown(run_source / conf.name, "frr", "frr")
    daemon_argv = [
        f"{FRR_DIR}/{daemon}",
        "-C",
        "-f",
        f"{run_dir}/{conf.name}",
        "-i",
        f"{run_dir}/{daemon}.pid",
    ]
    result = subprocess.run(
        ["unshare", "--mount", "sh", "-c", f'{_PRIVATE} && exec "$@"', "sh", *binds, *daemon_argv],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    output = result.stdout + result.stderr
    assert "can't open configuration file" not in output, output
    return result


def vtysh_dryrun(conf: Path) -> subprocess.CompletedProcess:
    """vtysh --dryrun: the real FRR grammar, read as root, no daemon involved (exit 2 on errors)."""
    return subprocess.run(
        ["vtysh", "--dryrun", "-f", str(conf)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
