"""Register xpnet's modules under the Gluon 1.x names they stand for.

``import mxnet.gluon.data.vision`` style statements (``from xpnet.gluon.data.vision import
transforms``) look modules up by their dotted names, so an attribute alias is not enough:
each aliased module and its already-imported submodules are entered in ``sys.modules``
under the alias name too. The entries are the *same* module objects, never copies.
"""
import sys

__all__ = ['alias_module']


def alias_module(alias, module):
    """Make ``module`` (and its imported submodules) importable as ``alias``; returns it."""
    real = module.__name__
    sys.modules.setdefault(alias, module)
    lead = real + '.'
    for name, sub in list(sys.modules.items()):
        if name.startswith(lead) and sub is not None:
            sys.modules.setdefault(alias + name[len(real):], sub)
    return module
