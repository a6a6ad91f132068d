"""get_or_create and get_or_create_many (private: the public face is :class:`dbplugins.Query`)."""

from .common import MAX_TRIES
from .many import get_or_create_many
from .one import get_or_create

__all__ = ["get_or_create", "get_or_create_many", "MAX_TRIES"]
