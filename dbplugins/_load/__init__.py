"""Private: see dbplugins/__init__.py for the public names."""
