"""``xpnet.init``: the initializers (see :mod:`xpnet.initializer`)."""
from .initializer import *  # noqa: F401,F403
from .initializer import __all__  # noqa: F401
