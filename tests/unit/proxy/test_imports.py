"""What importing a module may do: no os-ken in the core, no patching of os-ken by the lab.

Each check runs in a fresh interpreter: this one may have built an RFProxy
(which installs ofmsg's flow-stats parser) or imported os-ken already.
"""

from __future__ import annotations

import subprocess
import sys


def _run(code: str) -> None:
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_importing_the_lab_runner_leaves_os_kens_parsers_alone():
    _run(
        "import sys\n"
        "from os_ken.ofproto import ofproto_v1_3 as O, ofproto_v1_3_parser as P\n"
        "before = dict(P._MSG_PARSERS)\n"
        "import routeflow.lab.runner\n"
        "assert P._MSG_PARSERS == before, 'os-ken parser table patched on import'\n"
        "assert 'routeflow.proxy.app' not in sys.modules\n"
    )


def test_the_proxy_core_imports_no_os_ken():
    _run(
        "import sys\n"
        "import routeflow.proxy.core\n"
        "assert not [m for m in sys.modules if m.startswith('os_ken')]\n"
    )


def test_installing_the_flow_stats_parser_is_explicit_and_idempotent():
    _run(
        "from os_ken.ofproto import ofproto_v1_3 as O, ofproto_v1_3_parser as P\n"
        "from routeflow.proxy import ofmsg\n"
        "original = P._MSG_PARSERS[O.OFPT_MULTIPART_REPLY]\n"
        "assert original.__module__.startswith('os_ken')\n"
        "ofmsg.install_flow_stats_parser()\n"
        "ofmsg.install_flow_stats_parser()\n"
        "assert P._MSG_PARSERS[O.OFPT_MULTIPART_REPLY] is ofmsg._multipart_reply\n"
        "assert ofmsg._os_ken_multipart_reply is original\n"
    )
