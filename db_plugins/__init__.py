"""Compatibility alias of :mod:`dbplugins` under db-plugins' import path.

Code written for ALeRCE's db-plugins keeps working unchanged::

    from db_plugins.db.sql import SQLConnection
    from db_plugins.db.sql.models import *

Everything here re-exports :mod:`dbplugins`; new code should import ``dbplugins`` directly.
"""
