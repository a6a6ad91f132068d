"""Reliability tests: server and client faults, load, hostile input, migrations, secrets (issue 7)."""
