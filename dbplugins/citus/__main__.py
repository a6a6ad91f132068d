"""``python -m dbplugins.citus start|stop|status|destroy``: the same command as ``dbp cluster`` (an alias for
scripts written before it existed); see :mod:`dbplugins.cli.cluster`."""

from __future__ import annotations

import sys

from ..cli.cluster import cluster


def main(argv: list[str]) -> int:
    """Run ``dbp cluster ARGV``; return its exit code (0 ok, 1 failure or not running, 2 usage)."""
    try:
        cluster.main(args=argv, prog_name="python -m dbplugins.citus", standalone_mode=True)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
