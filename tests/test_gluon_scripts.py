"""Gluon 1.x scripts run on xpnet with only their import lines changed.

Each script of ``tests/gluon_scripts.py`` is written as for MXNet 1.9 (``import mxnet as
mx``); the test rewrites the import lines to ``xpnet`` and runs it. Started from MXNet's
initial parameters, the hybridized CNN (Adam) and the tied-weight LSTM language model
(SGD, gradient clipping) follow MXNet 1.9.1's losses step for step
(tests/oracle/gen_gluon_scripts.py). Plus the namespace itself: every name is the
xpnet module or class (an alias, not a copy), dotted imports work, and the model zoo is
imported only at its first use.
"""
import subprocess
import sys

import numpy as np

import xpnet
from conftest import oracle
from gluon_scripts import CNN_SCRIPT, CUSTOM_SCRIPT, LM_SCRIPT, MLP_SCRIPT, prepare

REF = oracle('gluon_scripts.npz')

def run_gluon_script(source, **replace):
    """Run a Gluon 1.x script on xpnet; returns its ``RESULT``."""
    env = {'__name__': '__gluon_script__'}
    exec(compile(prepare(source, **replace), '<gluon script>', 'exec'), env)
    return env['RESULT']


def _mxnet_initial_params(tmp_path, family):
    """Write the oracle's initial parameters (Gluon 1.9.1 names) as an MXNet file."""
    arrays = {k[len(family) + 1:]: xpnet.nd.array(v) for k, v in REF.items()
              if k.startswith(family + ':')}
    path = str(tmp_path / f'{family}.params')
    xpnet.nd.save(path, arrays, format='mxnet')
    return path


def test_mlp_with_dataloader_learns():
    assert run_gluon_script(MLP_SCRIPT) > 0.95


def test_hybridized_cnn_trains_as_mxnet(tmp_path):
    path = _mxnet_initial_params(tmp_path, 'cnn')
    losses = run_gluon_script(CNN_SCRIPT, INIT_HOOK=f'net.load_parameters({path!r})')
    np.testing.assert_allclose(losses, REF['cnn_losses'], rtol=1e-4)
    assert losses[-1] < 0.7 * losses[0]


def test_rnn_language_model_with_tied_weights_trains_as_mxnet(tmp_path):
    path = _mxnet_initial_params(tmp_path, 'lm')
    totals = run_gluon_script(LM_SCRIPT, INIT_HOOK=f'model.load_parameters({path!r})')
    np.testing.assert_allclose(totals, REF['lm_totals'], rtol=1e-4)
    assert totals[-1] < 0.8 * totals[0]


def test_custom_hybrid_block_with_params_get(tmp_path):
    first, last, keys = run_gluon_script(CUSTOM_SCRIPT, PARAMS=str(tmp_path / 'net.params'),
                                         ARRAYS=str(tmp_path / 'x.nd'))
    assert last < first
    assert keys == ['0.bias', '0.weight', '2.bias', '2.weight']


def test_namespace_names_are_the_xpnet_modules():
    mx = xpnet
    assert mx.gluon.nn is xpnet.layers and mx.gluon.rnn is xpnet.layers.rnn
    assert mx.gluon.loss is xpnet.loss and mx.gluon.data is xpnet.data
    assert mx.gluon.data.vision is xpnet.data.vision and mx.gluon.utils is xpnet.utils
    assert mx.gluon.Trainer is xpnet.Trainer and mx.gluon.Block is xpnet.layers.Block
    assert mx.gluon.HybridBlock is xpnet.layers.HybridBlock
    assert mx.gluon.Parameter is xpnet.layers.Parameter
    assert mx.gluon.ParameterDict is xpnet.layers.ParameterDict
    assert mx.gluon.contrib.nn is xpnet.layers and mx.gluon.contrib.rnn is xpnet.layers.rnn
    assert mx.gluon.contrib.data is xpnet.data
    assert mx.gluon.contrib.estimator is xpnet.estimator
    assert mx.init is xpnet.initializer or mx.init.Xavier is xpnet.initializer.Xavier
    assert mx.context.Context is xpnet.Context and mx.context.cpu is xpnet.cpu
    assert mx.nd.random is mx.random and callable(mx.test_utils.assert_almost_equal)
    from xpnet.gluon.data.vision import transforms
    from xpnet.gluon.contrib.estimator import estimator
    from xpnet.gluon.model_zoo import vision
    import xpnet.gluon.nn as gnn
    assert transforms is xpnet.data.vision.transforms and gnn is xpnet.layers
    assert estimator.Estimator is xpnet.estimator.Estimator
    assert vision.get_model('resnet18_v1').__class__.__name__ == 'ResNetV1'
    assert not hasattr(mx.gluon, 'SymbolBlock')


def test_importing_xpnet_does_not_import_the_model_zoo():
    code = ('import sys, xpnet; assert "xpnet.gluon.model_zoo" not in sys.modules; '
            'xpnet.gluon.model_zoo.vision; assert "xpnet.gluon.model_zoo" in sys.modules')
    subprocess.run([sys.executable, '-c', code], check=True, timeout=120)


def test_dense_zero_units_constructs_and_fails_at_forward():
    d = xpnet.gluon.nn.Dense(0)
    d.initialize()
    try:
        d(xpnet.nd.ones((2, 3)))
    except ValueError as err:
        assert 'units is 0' in str(err)
    else:
        raise AssertionError('Dense(0) computed an output')


def test_dataloader_accepts_auto_reload():
    loader = xpnet.gluon.data.DataLoader(np.arange(10), batch_size=4, auto_reload=True)
    assert [len(b) for b in loader] == [4, 4, 2]
