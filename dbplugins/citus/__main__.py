"""``python -m dbplugins.citus start|stop|status|destroy``: the local Citus cluster under ``./.dbp/citus``.

``start`` prints the coordinator's DSN (no password in it: it names the cluster's passfile), e.g.
``DBP_DSN="$(python -m dbplugins.citus start)" dbp initdb --distributed``.
"""

from __future__ import annotations

import sys

from ..errors import DbpError
from .cluster import LocalCluster, default_cluster_dir

_USAGE = "usage: python -m dbplugins.citus start|stop|status|destroy"


def main(argv: list[str]) -> int:
    """Run one command; return the exit code (0 ok, 1 failure or not running, 2 usage)."""
    if len(argv) != 1 or argv[0] not in ("start", "stop", "status", "destroy"):
        print(_USAGE, file=sys.stderr)
        return 2
    cluster = LocalCluster(default_cluster_dir())
    try:
        if argv[0] == "start":
            cluster.start()
            print(cluster.dsn())
        elif argv[0] == "stop":
            cluster.stop()
            print("stopped")
        elif argv[0] == "destroy":
            cluster.destroy()
            print(f"removed {cluster.root}")
        elif cluster.is_running():
            print(f"running: {cluster.dsn()}")
        else:
            print(f"not running ({cluster.root})")
            return 1
    except DbpError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
