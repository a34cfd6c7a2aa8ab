"""The estimator examples run end to end (short settings; the full digits run is checked
for >= 97% validation accuracy when run as the README's first command)."""
import os
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


def test_train_digits_writes_outputs_under_out(tmp_path):
    main = _load('train_digits.py')['main']
    out = tmp_path / 'digits'
    accuracy = main(['--epochs', '4', '--out', str(out), '--no-progress-bar'])
    assert accuracy > 0.9
    ckpt = sorted(os.listdir(out / 'checkpoints'))
    assert 'digits-best.params' in ckpt and 'digits-epoch3batch180.progress' in ckpt
    assert any(f.startswith('events.out.tfevents') for f in os.listdir(out / 'tensorboard'))
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
