"""Benchmarks and the ingestion worker.

- :mod:`bench.alerts`   the real ZTF packets (``bench/data/ztf-alerts``) and a synthetic night like them,
  both mapped to ``object`` / ``detection`` / ``non_detection`` / ``dataquality`` rows;
- :mod:`bench.ingest`   the ingestion worker (``python -m bench.ingest --alerts N``, what ``make run`` runs);
- :mod:`bench.run`      ``make bench``: side-by-side timings written to ``bench/RESULTS.md``;
- :mod:`bench.original` runs the original db-plugins 4.2.7 in its own virtualenv (``bench/.venv-original``);
- :mod:`bench.reads`, :mod:`bench.citus`: ``make bench``'s light-curve reads and its Citus section
  (:mod:`bench.harness`: what the sections share).
"""
