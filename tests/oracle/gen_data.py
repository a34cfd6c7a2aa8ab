"""Reference results for xpnet.data, computed with MXNet Gluon 1.9.1.

Run with the MXNet venv (never imported by the tests):
    /work/venvs/mx/bin/python tests/oracle/gen_data.py
Writes tests/data/data.npz with keys:
- transforms: 'totensor/<case>/x', 'totensor/<case>/y', 'normalize/<case>/x|y|mean|std'.
- vocabulary: 'vocab/<case>/idx_to_token' for a fixed counter ('vocab/counter_tokens',
  'vocab/counter_counts') under several settings; 'count_tokens/tokens|counts'.
- wikitext: 'wiki/<segment>.tokens' (the corpus text as a 0-d str array), 'wiki/<case>/data',
  'wiki/<case>/label', 'wiki/<case>/idx_to_token' for WikiText2(seq_len=5) on that text.
- samplers: 'interval/<length>_<interval>_<rollover>', 'batch/<mode>' (three epochs of a
  BatchSampler over SequentialSampler(10), batch 3, concatenated, -1 separating batches).
- batchify dtypes: 'batchify/<case>' (dtype names of DataLoader batches).
- readers: 'mnist/images_idx', 'mnist/labels_idx' (raw IDX bytes), 'mnist/data', 'mnist/label';
  'cifar/bin' (raw binary batch bytes), 'cifar/data', 'cifar/label'.
"""
import gzip
import os
import tempfile

import mxnet as mx
import numpy as np
from mxnet import gluon
from mxnet.contrib import text as mtext
from mxnet.gluon.contrib.data import text as ctext
from mxnet.gluon.data.vision import datasets as vdatasets, transforms

rng = np.random.RandomState(7)
out = {}

# ---- transforms ----------------------------------------------------------------------------
for name, shape, dtype in [('hwc_u8', (4, 5, 3), np.uint8), ('nhwc_u8', (2, 4, 5, 3), np.uint8),
                           ('hwc_f32', (3, 2, 1), np.float32)]:
    x = (rng.uniform(0, 255, shape)).astype(dtype)
    out[f'totensor/{name}/x'] = x
    out[f'totensor/{name}/y'] = transforms.ToTensor()(mx.nd.array(x, dtype=dtype)).asnumpy()

for name, shape, mean, std in [('chw_tuple', (3, 4, 5), (0.1, 0.5, 0.9), (0.2, 0.3, 0.7)),
                               ('nchw_tuple', (2, 3, 4, 5), (0.1, 0.5, 0.9), (0.2, 0.3, 0.7)),
                               ('chw_scalar', (3, 2, 3), 0.45, 0.22),
                               ('one_channel', (2, 1, 3, 2), (0.3,), (0.6,))]:
    x = rng.uniform(0, 1, shape).astype(np.float32)
    out[f'normalize/{name}/x'] = x
    out[f'normalize/{name}/mean'] = np.asarray(mean, np.float32)
    out[f'normalize/{name}/std'] = np.asarray(std, np.float32)
    out[f'normalize/{name}/y'] = transforms.Normalize(mean, std)(mx.nd.array(x)).asnumpy()

# ---- vocabulary ----------------------------------------------------------------------------
source = ' the cat sat on the mat \n The dog ate the cat food \n a b c a b a zz yy xx \n'
counter = mtext.utils.count_tokens_from_str(source)
tokens = sorted(counter)
out['vocab/counter_tokens'] = np.array(tokens)
out['vocab/counter_counts'] = np.array([counter[t] for t in tokens], np.int64)
vocab_cases = {
    'default': {},
    'most3': dict(most_freq_count=3),
    'min2': dict(min_freq=2),
    'reserved': dict(reserved_tokens=['<pad>', '<eos>']),
    'unk_reserved_most4': dict(unknown_token='<UNK>', reserved_tokens=['the'], most_freq_count=4),
}
for name, kw in vocab_cases.items():
    v = mtext.vocab.Vocabulary(counter, **kw)
    out[f'vocab/{name}/idx_to_token'] = np.array(v.idx_to_token)
lower = mtext.utils.count_tokens_from_str(source, to_lower=True)
lt = sorted(lower)
out['count_tokens/tokens'] = np.array(lt)
out['count_tokens/counts'] = np.array([lower[t] for t in lt], np.int64)

# ---- wikitext --------------------------------------------------------------------------------
ctext.check_sha1 = lambda *args, **kwargs: True      # use our local files, never download
words = ['alpha', 'beta', 'gamma', 'delta', '<unk>', '@-@', ',', '.', 'the', 'of']
corpus = {}
for seg, n_lines in (('train', 9), ('valid', 4), ('test', 3)):
    lines = []
    for i in range(n_lines):
        if i % 4 == 1:
            lines.append('')
        elif i % 4 == 2:
            lines.append(' = = Heading = = ')
        else:
            k = rng.randint(3, 12)
            lines.append(' ' + ' '.join(words[j] for j in rng.randint(0, len(words), k)) + ' ')
    if seg == 'test':
        lines.append(' unseen\ttoken tabbed ')   # a tab: counted as one token, split as two
    corpus[seg] = '\n'.join(lines) + '\n'
with tempfile.TemporaryDirectory() as root:
    for seg, content in corpus.items():
        with open(os.path.join(root, f'wiki.{seg}.tokens'), 'w', encoding='utf8') as f:
            f.write(content)
        out[f'wiki/{seg}.tokens'] = np.array(content)
    train = ctext.WikiText2(root=root, segment='train', seq_len=5)
    for case, ds in [('train', train),
                     ('valid_trainvocab', ctext.WikiText2(root=root, segment='validation',
                                                          vocab=train.vocabulary, seq_len=5)),
                     ('test_ownvocab', ctext.WikiText2(root=root, segment='test', seq_len=3))]:
        out[f'wiki/{case}/data'] = ds._data.asnumpy()
        out[f'wiki/{case}/label'] = ds._label.asnumpy()
        out[f'wiki/{case}/idx_to_token'] = np.array(ds.vocabulary.idx_to_token)
        first = ds[0]
        assert first[0].dtype == np.int32 and first[0].shape == (ds._seq_len,)

# ---- samplers --------------------------------------------------------------------------------
for length, interval, rollover in [(13, 3, True), (13, 3, False), (10, 10, True), (7, 1, False),
                                   (12, 4, True)]:
    s = gluon.contrib.data.IntervalSampler(length, interval, rollover=rollover)
    out[f'interval/{length}_{interval}_{rollover}'] = np.array(list(s), np.int64)
for mode in ('keep', 'discard', 'rollover'):
    bs = gluon.data.BatchSampler(gluon.data.SequentialSampler(10), 3, mode)
    flat = []
    for _ in range(3):
        for b in bs:
            flat.extend(b + [-1])
        flat.append(-2)   # epoch boundary
    out[f'batch/{mode}'] = np.array(flat, np.int64)

# ---- batchify dtypes --------------------------------------------------------------------------
cases = {
    'py_int': gluon.data.SimpleDataset([1, 2, 3, 4]),
    'np_float32_scalar': gluon.data.SimpleDataset(list(np.arange(4, dtype=np.float32))),
    'np_float64_rows': gluon.data.ArrayDataset(np.ones((4, 2))),
    'nd_rows_and_int_list': gluon.data.ArrayDataset(mx.nd.ones((4, 2)), [0, 1, 0, 1]),
    'np_uint8_and_nd_1d': gluon.data.ArrayDataset(np.ones((4, 2), np.uint8),
                                                  mx.nd.array([1, 2, 3, 4], dtype='int32')),
}
for name, ds in cases.items():
    batch = next(iter(gluon.data.DataLoader(ds, batch_size=2)))
    parts = batch if isinstance(batch, list) else [batch]
    out[f'batchify/{name}'] = np.array([np.dtype(p.dtype).name for p in parts])

# ---- readers ---------------------------------------------------------------------------------
vdatasets.download = lambda url, path=None, sha1_hash=None, **kw: \
    os.path.join(path, url.rsplit('/', 1)[-1])       # the files are already local
n = 5
images = rng.randint(0, 256, (n, 28, 28)).astype(np.uint8)
labels = rng.randint(0, 10, n).astype(np.uint8)
img_idx = np.frombuffer(bytes([0, 0, 8, 3]) + np.array([n, 28, 28], '>u4').tobytes()
                        + images.tobytes(), np.uint8)
lbl_idx = np.frombuffer(bytes([0, 0, 8, 1]) + np.array([n], '>u4').tobytes() + labels.tobytes(),
                        np.uint8)
out['mnist/images_idx'], out['mnist/labels_idx'] = img_idx, lbl_idx
with tempfile.TemporaryDirectory() as root:
    for fname, raw in (('t10k-images-idx3-ubyte.gz', img_idx),
                       ('t10k-labels-idx1-ubyte.gz', lbl_idx)):
        with gzip.open(os.path.join(root, fname), 'wb') as f:
            f.write(raw.tobytes())
    m = gluon.data.vision.MNIST(root=root, train=False)
    out['mnist/data'] = m._data.asnumpy()
    out['mnist/label'] = np.asarray(m._label)
    x0, y0 = m[0]
    assert x0.dtype == np.uint8 and x0.shape == (28, 28, 1) and type(y0) is np.int32

records = np.concatenate([rng.randint(0, 10, (n, 1)), rng.randint(0, 256, (n, 3072))],
                         axis=1).astype(np.uint8)
out['cifar/bin'] = records.reshape(-1)
with tempfile.TemporaryDirectory() as root:
    path = os.path.join(root, 'test_batch.bin')
    records.tofile(path)
    c = vdatasets.CIFAR10.__new__(vdatasets.CIFAR10)
    d, lab = c._read_batch(path)
    out['cifar/data'], out['cifar/label'] = d, lab

here = os.path.dirname(os.path.abspath(__file__))
dest = os.path.join(here, '..', 'data', 'data.npz')
np.savez_compressed(dest, **out)
print('wrote', os.path.normpath(dest), len(out), 'arrays')
