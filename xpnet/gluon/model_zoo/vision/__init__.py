"""``xpnet.gluon.model_zoo.vision``: Gluon 1.x's vision models, by constructor or by name.

AlexNet, DenseNet 121/161/169/201, Inception V3, ResNet V1/V2 18/34/50/101/152,
SqueezeNet 1.0/1.1, VGG 11/13/16/19 with and without BatchNorm, MobileNet V1/V2 with width
multipliers 1.0/0.75/0.5/0.25. Structures and parameter names are Gluon's, so a Gluon
``save_parameters`` file (or a model-zoo file) loads with ``load_parameters``.

``pretrained=True`` loads ``<root>/<name>-<short hash>.params`` (Gluon's file names; root
``~/.mxnet/models`` by default); xpnet never downloads it.

Pretrained models expect RGB images scaled to [0, 1] and normalized with
``mean = [0.485, 0.456, 0.406]``, ``std = [0.229, 0.224, 0.225]``, at least 224x224
(299x299 for Inception V3).

Example::

    from xpnet.gluon.model_zoo import vision
    net = vision.get_model('resnet18_v1', classes=10)
    net.initialize()
"""
# the modules first: ``alexnet`` is then rebound to the function, as in Gluon
from . import alexnet as _alexnet, densenet as _densenet, inception as _inception
from . import mobilenet as _mobilenet, resnet as _resnet, squeezenet as _squeezenet
from . import vgg as _vgg
from .alexnet import *  # noqa: F401,F403
from .densenet import *  # noqa: F401,F403
from .inception import *  # noqa: F401,F403
from .resnet import *  # noqa: F401,F403
from .squeezenet import *  # noqa: F401,F403
from .vgg import *  # noqa: F401,F403
from .mobilenet import *  # noqa: F401,F403

_models = {
    **{f'resnet{d}_v{v}': getattr(_resnet, f'resnet{d}_v{v}')
       for v in (1, 2) for d in (18, 34, 50, 101, 152)},
    **{f'vgg{d}{bn}': getattr(_vgg, f'vgg{d}{bn}') for d in (11, 13, 16, 19) for bn in ('', '_bn')},
    'alexnet': _alexnet.alexnet,
    **{f'densenet{d}': getattr(_densenet, f'densenet{d}') for d in (121, 161, 169, 201)},
    'squeezenet1.0': _squeezenet.squeezenet1_0, 'squeezenet1.1': _squeezenet.squeezenet1_1,
    'inceptionv3': _inception.inception_v3,
    **{f'mobilenet{m}': getattr(_mobilenet, f'mobilenet{m.replace(".", "_")}')
       for m in ('1.0', '0.75', '0.5', '0.25')},
    **{f'mobilenetv2_{m}': getattr(_mobilenet, f'mobilenet_v2_{m.replace(".", "_")}')
       for m in ('1.0', '0.75', '0.5', '0.25')},
}

__all__ = (['get_model', 'model_names'] + _alexnet.__all__ + _densenet.__all__
           + _inception.__all__ + _resnet.__all__ + _squeezenet.__all__ + _vgg.__all__
           + _mobilenet.__all__)


def model_names():
    """The names :func:`get_model` accepts, sorted."""
    return sorted(_models)


def get_model(name, **kwargs):
    """A model of the zoo by name (case-insensitive), e.g. ``'resnet50_v1'``,
    ``'mobilenetv2_0.25'``, ``'squeezenet1.1'``.

    Args:
        name: the model's name (see :func:`model_names`).
        pretrained: load the model-zoo file ``<root>/<name>-<hash>.params`` (never
            downloaded; a clear error names the expected path if it is missing).
        ctx: where the pretrained weights go (cpu by default).
        root: the model store, ``~/.mxnet/models`` (``$MXNET_HOME/models``) by default.
        classes: number of outputs (the pretrained files have 1000).
        **kwargs: further constructor arguments (``thumbnail``, ``prefix``...).

    Returns:
        The model, a HybridBlock (uninitialized unless ``pretrained``).
    """
    key = name.lower()
    if key not in _models:
        raise ValueError(f'Model {name} is not supported. Available options are\n\t' +
                         '\n\t'.join(sorted(_models)))
    return _models[key](**kwargs)
