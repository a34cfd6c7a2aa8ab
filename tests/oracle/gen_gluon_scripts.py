"""MXNet 1.9.1's run of two Gluon 1.x scripts of tests/gluon_scripts.py.

    /work/venvs/mx/bin/python tests/oracle/gen_gluon_scripts.py

The hybridized CNN (Adam) and the tied-weight LSTM language model (SGD with gradient
clipping) run on MXNet; their initial parameters (as ``save_parameters`` names them, e.g.
``rnn._unfused.0.i2h_weight``) are stored as ``cnn:<name>`` / ``lm:<name>`` and their
per-step losses as ``cnn_losses`` / per-epoch totals as ``lm_totals``. The test loads the
same parameters into the same script on xpnet. Writes tests/data/gluon_scripts.npz.
"""
import os
import sys
import tempfile

import mxnet as mx
import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))
from gluon_scripts import CNN_SCRIPT, LM_SCRIPT, prepare  # noqa: E402

OUT = {}


def run(family, source, model, result_key):
    path = os.path.join(tempfile.mkdtemp(), 'init.params')
    env = {'__name__': '__gluon_script__'}
    code = prepare(source, 'mxnet', INIT_HOOK=f'{model}.save_parameters({path!r})')
    exec(compile(code, '<gluon script>', 'exec'), env)
    for name, value in mx.nd.load(path).items():
        OUT[f'{family}:{name}'] = value.asnumpy()
    OUT[result_key] = np.array(env['RESULT'], np.float64)
    print(family, env['RESULT'])


if __name__ == '__main__':
    run('cnn', CNN_SCRIPT, 'net', 'cnn_losses')
    run('lm', LM_SCRIPT, 'model', 'lm_totals')
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'data',
                       'gluon_scripts.npz')
    np.savez_compressed(out, **OUT)
    print('wrote', os.path.normpath(out), os.path.getsize(out))
