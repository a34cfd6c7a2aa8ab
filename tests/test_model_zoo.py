"""The vision model zoo against Gluon 1.9.1 (tests/oracle/gen_model_zoo.py).

Every architecture: parameter names (structural and legacy ``save_params``) and shapes
before the first forward. A representative subset: outputs for the same weights, loaded
from an MXNet-format ``.params`` file. Plus the local store: file names, the never-download
error, SHA-1 checks and ``pretrained=True``.
"""
import json
import os

import numpy as np
import pytest

import xpnet
from xpnet.gluon.model_zoo import model_store, vision
from xpnet.layers.mxnet_writer import write_mxnet_params

from conftest import oracle
from zoo_params import FORWARD, model_input, param_value

REF = oracle('model_zoo.npz')
STRUCTURE = json.loads(str(REF['structure']))
SHAPES = json.loads(str(REF['shapes']))


@pytest.mark.parametrize('name', sorted(STRUCTURE))
def test_structure_matches_gluon(name):
    net = vision.get_model(name)
    params = net.collect_params()
    legacy = net._gluon_names()
    rows = [[k, legacy[k][len(net.prefix):], list(p.shape)] for k, p in params.items()]
    assert rows == STRUCTURE[name]


def _write_reference_params(name, path):
    """The oracle's weights of model ``name`` as an MXNet ``.params`` file."""
    write_mxnet_params(path, {k: param_value(k, tuple(shape))
                              for k, shape in SHAPES[name].items()})


@pytest.mark.parametrize('name', sorted(FORWARD))
def test_forward_matches_gluon(name, tmp_path):
    path = str(tmp_path / f'{name}.params')
    _write_reference_params(name, path)
    net = vision.get_model(name)
    net.load_parameters(path)
    y = net(xpnet.nd.array(model_input(name))).asnumpy()
    ref = REF['out:' + name]
    np.testing.assert_allclose(y, ref, rtol=1e-4, atol=1e-5 * np.abs(ref).max())


def test_pretrained_loads_the_zoo_file_from_root(tmp_path, monkeypatch):
    """``pretrained=True`` reads ``<root>/<name>-<hash>.params`` (checked by SHA-1)."""
    name = 'mobilenetv2_0.25'
    src = str(tmp_path / 'weights.params')
    _write_reference_params(name, src)
    sha1 = __import__('hashlib').sha1(open(src, 'rb').read()).hexdigest()
    monkeypatch.setitem(model_store._model_sha1, name, sha1)
    os.replace(src, tmp_path / f'{name}-{sha1[:8]}.params')
    net = vision.get_model(name, pretrained=True, root=str(tmp_path), ctx=xpnet.cpu())
    y = net(xpnet.nd.array(model_input(name))).asnumpy()
    np.testing.assert_allclose(y, REF['out:' + name], rtol=1e-4, atol=1e-6)


def test_pretrained_never_downloads(tmp_path):
    with pytest.raises(FileNotFoundError) as err:
        vision.resnet18_v1(pretrained=True, root=str(tmp_path))
    msg = str(err.value)
    assert 'never downloads' in msg
    assert os.path.join(str(tmp_path), 'resnet18_v1-a0666292.params') in msg
    assert os.listdir(tmp_path) == []


def test_pretrained_rejects_a_file_with_another_hash(tmp_path):
    (tmp_path / 'squeezenet1.1-33ba0f93.params').write_bytes(b'not the zoo file')
    with pytest.raises(ValueError, match='SHA-1'):
        vision.get_model('SqueezeNet1.1', pretrained=True, root=str(tmp_path))


def test_file_names_and_unknown_models():
    assert model_store.short_hash('resnet50_v2') == 'ecdde353'
    assert len(vision.model_names()) == 34
    with pytest.raises(ValueError, match='not supported'):
        vision.get_model('resnet19_v1')
    net = vision.resnet18_v1(classes=10, prefix='backbone_')
    assert net.name == 'backbone' and net.output.weight.shape == (10, 512)
