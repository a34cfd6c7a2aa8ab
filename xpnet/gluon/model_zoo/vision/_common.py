"""What the model-zoo networks share: the features-then-output forward, and loading the
pretrained file."""
from .... import backend
from ....layers import HybridBlock
from ..model_store import get_model_file

__all__ = ['Classifier', 'finish']


class Classifier(HybridBlock):
    """A zoo network: ``output(features(x))``; subclasses build both children."""

    def forward(self, x):
        return self.output(self.features(x))


def finish(net, name, pretrained=False, ctx=None, root=None):
    """Load model ``name``'s zoo file into ``net`` on ``ctx`` (cpu by default) when
    ``pretrained``; return ``net``."""
    if pretrained:
        net.load_parameters(get_model_file(name, root=root),
                            ctx=ctx if ctx is not None else backend.cpu())
    return net
