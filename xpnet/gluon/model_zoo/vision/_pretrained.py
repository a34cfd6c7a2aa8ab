"""What every model-zoo constructor shares: loading the pretrained file and the ctx default."""
from .... import backend
from ..model_store import get_model_file

__all__ = ['finish']


def finish(net, name, pretrained=False, ctx=None, root=None):
    """Load model ``name``'s zoo file into ``net`` on ``ctx`` (cpu by default) when
    ``pretrained``; return ``net``."""
    if pretrained:
        net.load_parameters(get_model_file(name, root=root),
                            ctx=ctx if ctx is not None else backend.cpu())
    return net
