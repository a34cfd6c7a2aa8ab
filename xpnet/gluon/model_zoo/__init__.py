"""``xpnet.gluon.model_zoo``: Gluon 1.x's model zoo (``vision``) and its local file store.

Every architecture of ``mxnet.gluon.model_zoo.vision`` with Gluon's structure and parameter
names, so an MXNet model-zoo ``.params`` file loads into it. Files are never downloaded:
``pretrained=True`` reads ``<root>/<name>-<short hash>.params`` (Gluon's file name) if it is
there and raises naming that path otherwise.

Example::

    from xpnet.gluon.model_zoo import vision
    net = vision.get_model('resnet18_v1', pretrained=True, root='~/.mxnet/models')
"""
from . import model_store, vision  # noqa: F401
from .model_store import get_model_file, purge  # noqa: F401

__all__ = ['model_store', 'vision', 'get_model_file', 'purge']
