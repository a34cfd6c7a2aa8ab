"""The recurrent examples run end to end with the Estimator on small data and learn."""
import os
import random
import sys

import numpy as np

EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                        'examples')
sys.path.insert(0, EXAMPLES)

import convlstm_moving_squares  # noqa: E402
import word_lm  # noqa: E402


def _corpus(path, lines=1200):
    rng = random.Random(0)
    subj = ['the cat', 'a dog', 'the bird', 'my friend']
    verb = ['sees', 'likes', 'chases']
    obj = ['the ball', 'a mouse', 'the garden', 'a red car']
    with open(path, 'w', encoding='utf8') as f:
        for _ in range(lines):
            f.write(f'{rng.choice(subj)} {rng.choice(verb)} {rng.choice(obj)} .\n')


def test_word_lm_learns(tmp_path, capsys):
    path = str(tmp_path / 'corpus.txt')
    _corpus(path)
    train_ppl, val_ppl = word_lm.main(['--train', path, '--epochs', '2', '--emsize', '16',
                                       '--nhid', '16', '--bptt', '8', '--batch-size', '8',
                                       '--lr', '5'])
    vocab = 17                             # 16 words + '<eos>' (+ '<unk>')
    assert val_ppl < vocab / 3 and train_ppl < vocab / 2
    out = capsys.readouterr().out
    assert 'validation perplexity' in out


def test_word_lm_with_projection_and_validation_file(tmp_path):
    train, val = str(tmp_path / 'train.txt'), str(tmp_path / 'val.txt')
    _corpus(train, 600)
    _corpus(val, 100)
    _, val_ppl = word_lm.main(['--train', train, '--val', val, '--epochs', '1', '--emsize',
                               '16', '--nhid', '24', '--projection', '8', '--nlayers', '2',
                               '--bptt', '6', '--batch-size', '8', '--lr', '5'])
    assert np.isfinite(val_ppl) and val_ppl < 18


def test_moving_squares_data():
    v = convlstm_moving_squares.moving_squares(5, 6, size=10, square=3, seed=1)
    assert v.shape == (5, 7, 1, 10, 10)
    assert (v.sum(axis=(2, 3, 4)) == 9).all()           # one whole square per frame
    assert (np.abs(np.diff(v, axis=1)).sum(axis=(2, 3, 4)) > 0).all()   # it moves


def test_convlstm_example_learns():
    after, copy_last, before = convlstm_moving_squares.main(
        ['--train', '128', '--val', '16', '--frames', '5', '--size', '8', '--hidden', '6',
         '--batch-size', '8', '--epochs', '8', '--lr', '0.05'])
    # On 8x8 frames the velocity is ambiguous at first, so the error stays well above 0;
    # but the network must beat both the untrained one and copying the last frame.
    assert after < 0.65 * before and after < 0.6 * copy_last
