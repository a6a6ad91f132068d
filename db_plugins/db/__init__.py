"""Compatibility alias: ``db_plugins.db`` holds the ``sql`` plugin (the Mongo plugin is not provided)."""
