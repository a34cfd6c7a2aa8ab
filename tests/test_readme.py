"""Every ```python block of README.md runs as written: each on its own, in a fresh
namespace, in an empty temporary directory (blocks that write files write there)."""
import os
import re

import pytest

README = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'README.md')


def python_blocks():
    with open(README, encoding='utf-8') as f:
        text = f.read()
    blocks = re.findall(r'^```python[ \t]*\n(.*?)^```[ \t]*$', text, re.S | re.M)
    starts = [text[:m.start()].count('\n') + 2
              for m in re.finditer(r'^```python[ \t]*\n', text, re.M)]
    return list(zip(starts, blocks))


BLOCKS = python_blocks()


def test_the_readme_has_python_blocks():
    assert len(BLOCKS) >= 1


@pytest.mark.parametrize('line, code', BLOCKS, ids=[f'line{n}' for n, _ in BLOCKS])
def test_readme_block_runs(line, code, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    # compiled with README line numbers, so a failure points at the README
    exec(compile('\n' * (line - 1) + code, README, 'exec'), {'__name__': '__readme__'})
