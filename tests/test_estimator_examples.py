"""The estimator examples run end to end (short settings; the full digits run is checked
for >= 97% validation accuracy when run as the README's first command)."""
import importlib.util
import os
import re
import runpy
import sys

import pytest

EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'examples')
sklearn = pytest.importorskip('sklearn')


def _load(name):
    sys.path.insert(0, EXAMPLES)
    try:
        return runpy.run_path(os.path.join(EXAMPLES, name), run_name='example')
    finally:
        sys.path.remove(EXAMPLES)


def test_train_digits_writes_outputs_under_out(tmp_path, capsys):
    main = _load('train_digits.py')['main']
    out = tmp_path / 'digits'
    accuracy = main(['--epochs', '4', '--out', str(out), '--no-progress-bar'])
    assert accuracy > 0.9
    ckpt = sorted(os.listdir(out / 'checkpoints'))
    assert 'digits-best.params' in ckpt and 'digits-epoch3batch180.progress' in ckpt
    assert any(f.startswith('events.out.tfevents') for f in os.listdir(out / 'tensorboard'))
    assert len((out / 'log.csv').read_text().splitlines()) == 5
    if importlib.util.find_spec('matplotlib'):
        assert (out / 'history.png').read_bytes()[:4] == b'\x89PNG'
    lines = capsys.readouterr().out.splitlines()
    # the best epoch is an epoch number; the final evaluation is not logged as an epoch
    assert re.search(r'best epoch [0-3] \(validation accuracy 0\.\d+\)', lines[-1])
    assert lines[-2].startswith('Validation finished in ')
    # --resume continues the finished run: nothing left to train, same accuracy
    assert main(['--epochs', '4', '--out', str(out), '--resume',
                 '--no-progress-bar']) == pytest.approx(accuracy)


def test_resume_training_example_matches_uninterrupted_run(tmp_path):
    main = _load('resume_training.py')['main']
    assert main(['--out', str(tmp_path / 'resume')]) is True


def test_custom_handler_example(capsys):
    runpy.run_path(os.path.join(EXAMPLES, 'custom_handler.py'), run_name='example')['main']([])
    out = capsys.readouterr().out
    assert 'learning rate per epoch: [0.08, 0.16, 0.2, 0.2, 0.2]' in out


def test_finetune_zoo_example_uses_the_pretrained_features(tmp_path, monkeypatch):
    from xpnet.gluon.model_zoo import model_store, vision
    name = 'mobilenet0.25'
    zoo = vision.get_model(name)
    zoo.initialize()
    zoo(__import__('xpnet').nd.zeros((1, 3, 32, 32)))
    path = str(tmp_path / 'zoo.params')
    zoo.save_parameters(path)
    sha1 = __import__('hashlib').sha1(open(path, 'rb').read()).hexdigest()
    monkeypatch.setitem(model_store._model_sha1, name, sha1)
    os.replace(path, tmp_path / f'{name}-{sha1[:8]}.params')
    module = _load('finetune_zoo.py')
    net, pretrained = module['build'](name, 10, str(tmp_path), __import__('xpnet').cpu())
    assert pretrained and net.output.weight.shape[0] == 10
    assert net.output.weight.lr_mult == 10 and net.features[0].weight.lr_mult == 1
    import numpy as np
    np.testing.assert_array_equal(net.features[0].weight.data().asnumpy(),
                                  zoo.features[0].weight.data().asnumpy())
    accuracy = module['main'](['--model', name, '--root', str(tmp_path), '--limit', '96',
                               '--epochs', '1', '--size', '32'])
    assert 0.0 <= accuracy <= 1.0
