"""Text data: a token vocabulary and word-level language-model datasets from local files.

- :class:`Vocab` (alias ``Vocabulary``): Gluon contrib's ``text.vocab.Vocabulary`` (index 0
  is the unknown token, then the reserved tokens, then the counter's tokens by decreasing
  frequency, ties in token order), with ``max_size`` as another name for
  ``most_freq_count`` and ``vocab[tokens]`` for ``to_indices``.
- :func:`count_tokens_from_str` (Gluon contrib's) and :func:`count_tokens` (a list of tokens).
- :class:`WikiText2`, :class:`WikiText103`: Gluon contrib's datasets, read from
  ``wiki.{train,valid,test}.tokens`` in a local folder (never downloaded).
- :class:`LanguageModelDataset`: the same processing for any plain-text corpus.

Every line of the corpus is split on whitespace and ends with ``'<eos>'``; the tokens
of the whole file are indexed and cut into samples of ``seq_len``: sample ``i`` is
``(data, label)`` with ``label`` the data shifted by one token (int32 NDArrays).

Example::

    train = WikiText2('~/data/wikitext-2', segment='train', seq_len=35)
    vocab = train.vocabulary
    val = WikiText2('~/data/wikitext-2', segment='validation', vocab=vocab)
    data, label = train[0]                           # two (35,) int32 NDArrays
"""
import collections
import os
import re

import numpy as np

from ..backend import cpu
from ..ndarray import _wrap
from .dataset import Dataset

__all__ = ['Vocab', 'Vocabulary', 'count_tokens', 'count_tokens_from_str', 'LanguageModelDataset',
           'WikiText2', 'WikiText103']

EOS_TOKEN = '<eos>'


def count_tokens_from_str(source_str, token_delim=' ', seq_delim='\n', to_lower=False,
                          counter_to_update=None):
    """Count the tokens of a string split on ``token_delim`` and ``seq_delim`` (regular
    expressions), as Gluon contrib's ``text.utils.count_tokens_from_str``.

    Returns:
        ``counter_to_update`` (updated) or a new ``collections.Counter``.

    Example::

        >>> count_tokens_from_str(' Life is great ! \\n life is good . \\n', to_lower=True)
        Counter({'life': 2, 'is': 2, 'great': 1, '!': 1, 'good': 1, '.': 1})
    """
    tokens = [t for t in re.split(token_delim + '|' + seq_delim, source_str) if t]
    return count_tokens(tokens, to_lower, counter_to_update)


def count_tokens(tokens, to_lower=False, counter=None):
    """Count a sequence of tokens.

    Args:
        tokens: an iterable of tokens.
        to_lower: lower-case the tokens first.
        counter: a ``collections.Counter`` to update (default: a new one).
    """
    if to_lower:
        tokens = [t.lower() for t in tokens]
    if counter is None:
        return collections.Counter(tokens)
    counter.update(tokens)
    return counter


class Vocab:
    """Indexes tokens: the unknown token first, then ``reserved_tokens``, then the tokens of
    ``counter`` from the most frequent (ties broken by token order), keeping those seen at
    least ``min_freq`` times, at most ``max_size`` of them.

    Args:
        counter: a ``collections.Counter`` of token frequencies, or None (only the unknown
            and reserved tokens are indexed).
        most_freq_count: the largest number of counter tokens to index (reserved and
            unknown tokens not counted); None for no limit.
        min_freq: the minimum count of an indexed counter token (>= 1).
        unknown_token: what every token outside the vocabulary maps to (index 0).
        reserved_tokens: tokens always indexed after the unknown one, e.g. ``['<eos>']``.
        max_size: another name for ``most_freq_count`` (Gluon-NLP's).

    Example::

        >>> v = Vocab(count_tokens('a b b c c c'.split()), reserved_tokens=['<pad>'])
        >>> v.idx_to_token
        ['<unk>', '<pad>', 'c', 'b', 'a']
        >>> v['c'], v[['a', 'zzz']]
        (2, [4, 0])
    """

    def __init__(self, counter=None, most_freq_count=None, min_freq=1, unknown_token='<unk>',
                 reserved_tokens=None, max_size=None):
        if max_size is not None:
            if most_freq_count is not None and most_freq_count != max_size:
                raise ValueError(f'Vocab: max_size={max_size} and most_freq_count='
                                 f'{most_freq_count} disagree (they are the same setting)')
            most_freq_count = max_size
        if most_freq_count is not None and most_freq_count < 0:
            raise ValueError(f'Vocab: most_freq_count must be >= 0, got {most_freq_count}')
        if min_freq < 1:
            raise ValueError(f'Vocab: min_freq must be a positive value, got {min_freq}')
        if reserved_tokens is not None:
            reserved_tokens = list(reserved_tokens)
            if unknown_token in reserved_tokens:
                raise ValueError(f'Vocab: reserved_tokens must not contain the unknown token '
                                 f'{unknown_token!r}')
            if len(set(reserved_tokens)) != len(reserved_tokens):
                raise ValueError(f'Vocab: reserved_tokens has duplicates: {reserved_tokens}')
        self._unknown_token = unknown_token
        self._reserved_tokens = reserved_tokens
        self._idx_to_token = [unknown_token] + (reserved_tokens or [])
        self._token_to_idx = {t: i for i, t in enumerate(self._idx_to_token)}
        if counter is not None:
            self._index_counter(counter, most_freq_count, min_freq)

    def _index_counter(self, counter, most_freq_count, min_freq):
        if not isinstance(counter, collections.Counter):
            raise TypeError(f'Vocab: counter must be a collections.Counter, got '
                            f'{type(counter).__name__}')
        special = set(self._idx_to_token)
        # Stable sorts: by token, then by decreasing frequency, so ties stay in token order.
        token_freqs = sorted(counter.items(), key=lambda kv: kv[0])
        token_freqs.sort(key=lambda kv: kv[1], reverse=True)
        cap = len(special) + (len(counter) if most_freq_count is None else most_freq_count)
        for token, freq in token_freqs:
            if freq < min_freq or len(self._idx_to_token) == cap:
                break
            if token not in special:
                self._token_to_idx[token] = len(self._idx_to_token)
                self._idx_to_token.append(token)

    def __len__(self):
        return len(self._idx_to_token)

    def __contains__(self, token):
        return token in self._token_to_idx

    def __getitem__(self, tokens):
        """``to_indices(tokens)``: an index for a token, a list of indices for a list."""
        return self.to_indices(tokens)

    def __call__(self, tokens):
        return self.to_indices(tokens)

    def __repr__(self):
        return f'Vocab(size={len(self)}, unk={self._unknown_token!r}, ' \
               f'reserved={self._reserved_tokens})'

    @property
    def token_to_idx(self):
        """dict: token -> index."""
        return self._token_to_idx

    @property
    def idx_to_token(self):
        """list: index -> token."""
        return self._idx_to_token

    @property
    def unknown_token(self):
        return self._unknown_token

    @property
    def reserved_tokens(self):
        return self._reserved_tokens

    def to_indices(self, tokens):
        """The index of a token (unknown tokens give 0), or a list of indices for a list.

        Only a list is treated as a sequence of tokens (tokens may themselves be tuples).
        """
        lookup = self._token_to_idx
        if isinstance(tokens, list):
            return [lookup.get(t, 0) for t in tokens]
        return lookup.get(tokens, 0)

    def to_tokens(self, indices):
        """The token of an index, or a list of tokens for a list (or 1-D array) of indices.

        Raises:
            ValueError: an index is not an integer in ``[0, len(vocab))``.
        """
        single = not isinstance(indices, (list, tuple, np.ndarray))
        items = [indices] if single else list(np.asarray(indices).tolist()
                                              if isinstance(indices, np.ndarray) else indices)
        tokens = []
        for idx in items:
            if isinstance(idx, (bool, np.bool_)) or not isinstance(idx, (int, np.integer)) \
                    or not 0 <= idx < len(self._idx_to_token):
                raise ValueError(f'Token index {idx!r} is invalid: expected an integer in '
                                 f'[0, {len(self._idx_to_token)})')
            tokens.append(self._idx_to_token[int(idx)])
        return tokens[0] if single else tokens


Vocabulary = Vocab


class LanguageModelDataset(Dataset):
    """A word-level language-model dataset over a plain-text corpus file (the WikiText
    processing for any text).

    Each line is split on whitespace and ends with ``'<eos>'``; blank lines are dropped.
    Token ``t`` of the corpus predicts token ``t+1``: sample ``i`` is ``(data, label)``
    with ``data = tokens[i*seq_len:(i+1)*seq_len]`` and ``label`` the same window shifted by
    one, both (seq_len,) int32 NDArrays; the tail shorter than ``seq_len`` is dropped.

    Args:
        path: the text file (UTF-8).
        vocab: a :class:`Vocab` to index with; by default one is built from this corpus
            (``reserved_tokens=['<eos>']``).
        seq_len: tokens per sample.

    ``vocabulary`` is the Vocab used and ``frequencies`` the corpus' token counts. Use
    :meth:`from_text` for a corpus held in a string.
    """

    def __init__(self, path, vocab=None, seq_len=35):
        path = os.fspath(path)
        if not os.path.isfile(path):
            raise FileNotFoundError(f'{type(self).__name__}: no such file {path!r}')
        with open(path, 'r', encoding='utf8') as f:
            content = f.read()
        self._setup(content, vocab, seq_len)

    @classmethod
    def from_text(cls, text, vocab=None, seq_len=35):
        """The dataset of a corpus given as a string."""
        self = cls.__new__(cls)
        self._setup(text, vocab, seq_len)
        return self

    def _setup(self, content, vocab, seq_len):
        if isinstance(seq_len, bool) or not isinstance(seq_len, (int, np.integer)) or seq_len < 1:
            raise ValueError(f'{type(self).__name__}: seq_len must be a positive integer, got '
                             f'{seq_len!r}')
        if vocab is not None and not isinstance(vocab, Vocab):
            raise TypeError(f'{type(self).__name__}: vocab must be an xpnet.data.text.Vocab, got '
                            f'{type(vocab).__name__}')
        self._seq_len = int(seq_len)
        # As Gluon: the counter splits on ' ' and '\n' only, the samples on any whitespace.
        self._counter = count_tokens_from_str(content)
        self._vocab = vocab if vocab is not None else Vocab(self._counter,
                                                            reserved_tokens=[EOS_TOKEN])
        tokens = []
        for line in content.splitlines():
            words = line.split()
            if words:
                tokens.extend(words)
                tokens.append(EOS_TOKEN)
        ids = np.asarray(self._vocab.to_indices(tokens), dtype=np.int32)
        data, label = ids[:-1], ids[1:]
        usable = len(data) // self._seq_len * self._seq_len
        self._data = np.ascontiguousarray(data[:usable].reshape(-1, self._seq_len))
        self._label = np.ascontiguousarray(label[:usable].reshape(-1, self._seq_len))

    @property
    def vocabulary(self):
        """The :class:`Vocab` indexing this dataset."""
        return self._vocab

    @property
    def frequencies(self):
        """``collections.Counter`` of the corpus' tokens."""
        return self._counter

    def __getitem__(self, idx):
        return _wrap(self._data[idx].copy(), cpu(0)), _wrap(self._label[idx].copy(), cpu(0))

    def __len__(self):
        return len(self._label)

    def _gather(self, indices):
        idx = np.asarray(indices, dtype=np.intp)
        return [_wrap(self._data[idx], cpu(0)), _wrap(self._label[idx], cpu(0))]


_SEGMENTS = {'train': 'train', 'validation': 'valid', 'valid': 'valid', 'val': 'valid',
             'test': 'test'}


class _WikiText(LanguageModelDataset):
    _name = None
    _url = None

    def __init__(self, root, segment='train', vocab=None, seq_len=35):
        if segment not in _SEGMENTS:
            raise ValueError(f"{type(self).__name__}: segment must be 'train', 'validation' or "
                             f"'test', got {segment!r}")
        self._segment = segment
        root = os.path.expanduser(os.fspath(root))
        stem = f'wiki.{_SEGMENTS[segment]}'
        tried = []
        for sub in ('', self._name, self._name + '-raw'):
            for name in (stem + '.tokens', stem + '.raw'):
                path = os.path.join(root, sub, name)
                if os.path.isfile(path):
                    super().__init__(path, vocab, seq_len)
                    return
                tried.append(path)
        raise FileNotFoundError(
            f'{type(self).__name__}: cannot find {stem}.tokens for segment {segment!r} under '
            f'{root!r} (tried: {", ".join(tried)}). xpnet never downloads datasets: get '
            f'{self._url} and extract it there.')


def _default_root(name):
    home = os.path.expanduser(os.environ.get('XPNET_HOME', '~/.xpnet'))
    return os.path.join(home, 'datasets', name)


class WikiText2(_WikiText):
    """WikiText-2 (Salesforce research; CC BY-SA) for word-level language modelling.

    Reads ``wiki.train.tokens``, ``wiki.valid.tokens`` or ``wiki.test.tokens`` from
    ``root`` (or ``root/wikitext-2``; ``.raw`` files are accepted too). Samples are
    ``(data, label)`` windows of ``seq_len`` tokens, the label shifted by one; an ``'<eos>'``
    ends every line. See :class:`LanguageModelDataset`.

    Args:
        root: the folder (default ``$XPNET_HOME/datasets/wikitext-2``).
        segment: ``'train'``, ``'validation'`` or ``'test'``.
        vocab: the :class:`Vocab` to use; by default built from this segment's text (pass
            the training set's ``vocabulary`` to the validation and test sets).
        seq_len: tokens per sample.
    """
    _name = 'wikitext-2'
    _url = 'https://s3.amazonaws.com/research.metamind.io/wikitext/wikitext-2-v1.zip'

    def __init__(self, root=_default_root('wikitext-2'), segment='train', vocab=None, seq_len=35):
        super().__init__(root, segment, vocab, seq_len)


class WikiText103(_WikiText):
    """WikiText-103 (Salesforce research; CC BY-SA), read like :class:`WikiText2` from
    ``root`` or ``root/wikitext-103``.

    Args:
        root: the folder (default ``$XPNET_HOME/datasets/wikitext-103``).
        segment: ``'train'``, ``'validation'`` or ``'test'``.
        vocab: the :class:`Vocab` to use (default: built from this segment).
        seq_len: tokens per sample.
    """
    _name = 'wikitext-103'
    _url = 'https://s3.amazonaws.com/research.metamind.io/wikitext/wikitext-103-v1.zip'

    def __init__(self, root=_default_root('wikitext-103'), segment='train', vocab=None,
                 seq_len=35):
        super().__init__(root, segment, vocab, seq_len)
