"""``python -m dbplugins.cli``: the ``dbp`` command."""

from . import main

main()
