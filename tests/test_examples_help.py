"""Every example answers ``--help`` at once: exit status 0, a usage line and its full
description, and no work (no network is built or trained) before the arguments are parsed."""
import glob
import os
import runpy
import sys

import pytest

import xpnet

EXAMPLES = sorted(glob.glob(os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'examples', '*.py')))


def test_there_are_examples():
    assert len(EXAMPLES) >= 5


@pytest.mark.parametrize('path', EXAMPLES, ids=os.path.basename)
def test_example_help(path, monkeypatch, capsys):
    def no_work(*args, **kwargs):
        raise AssertionError(f'{os.path.basename(path)} started work before parsing --help')
    monkeypatch.setattr(xpnet.layers.Block, 'initialize', no_work)
    monkeypatch.setattr(sys, 'argv', [path, '--help'])
    with pytest.raises(SystemExit) as info:
        runpy.run_path(path, run_name='__main__')
    assert info.value.code in (0, None)
    out = capsys.readouterr().out
    assert out.startswith('usage: ' + os.path.basename(path))
    with open(path, encoding='utf-8') as f:
        summary = f.read().split('"""')[1].strip().split('\n\n')[0]
    # the whole first paragraph of the docstring, not a line cut mid-sentence
    assert ' '.join(summary.split()) in ' '.join(out.split())
