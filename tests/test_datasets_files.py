"""File readers (MNIST, CIFAR, WikiText), vision transforms and Vocab, against MXNet 1.9.1
results (tests/oracle/gen_data.py) on tiny files written in the standard formats."""
import collections
import gzip
import os

import numpy as np
import pytest
from conftest import oracle

import xpnet
from xpnet.data import DataLoader, IntervalSampler
from xpnet.data.text import (LanguageModelDataset, Vocab, Vocabulary, WikiText2, WikiText103,
                             count_tokens, count_tokens_from_str)
from xpnet.data.vision import CIFAR10, CIFAR100, MNIST, FashionMNIST, transforms

REF = oracle('data.npz')


# ---- MNIST ---------------------------------------------------------------------------------------
def write_mnist(root, prefix='t10k', gz=True, images=None, labels=None):
    os.makedirs(root, exist_ok=True)
    images = REF['mnist/images_idx'] if images is None else images
    labels = REF['mnist/labels_idx'] if labels is None else labels
    for stem, raw in ((f'{prefix}-images-idx3-ubyte', images),
                      (f'{prefix}-labels-idx1-ubyte', labels)):
        if gz:
            with gzip.open(os.path.join(root, stem + '.gz'), 'wb') as f:
                f.write(raw.tobytes())
        else:
            raw.tofile(os.path.join(root, stem))


@pytest.mark.parametrize('gz', [True, False])
def test_mnist_matches_gluon(tmp_path, gz):
    write_mnist(tmp_path, gz=gz)
    ds = MNIST(str(tmp_path), train=False)
    assert len(ds) == len(REF['mnist/label'])
    image, label = ds[3]
    assert isinstance(image, xpnet.NDArray) and image.dtype == np.uint8
    assert image.shape == (28, 28, 1) and image.context == xpnet.cpu(0)
    assert type(label) is np.int32
    np.testing.assert_array_equal(image.asnumpy(), REF['mnist/data'][3])
    assert label == REF['mnist/label'][3]
    data, lab = next(iter(DataLoader(ds, batch_size=5)))
    np.testing.assert_array_equal(data.asnumpy(), REF['mnist/data'])
    assert lab.dtype == np.int32 and lab.asnumpy().tolist() == REF['mnist/label'].tolist()


def test_mnist_train_files_transform_and_fashion(tmp_path):
    write_mnist(tmp_path, prefix='train')
    ds = MNIST(tmp_path, transform=lambda x, y: (x.astype('float32') / 255, y + 100))
    x, y = ds[0]
    assert x.dtype == np.float32 and y == REF['mnist/label'][0] + 100
    np.testing.assert_allclose(x.asnumpy(), REF['mnist/data'][0] / 255.0, rtol=1e-6)
    assert len(FashionMNIST(tmp_path)) == 5
    with pytest.raises(FileNotFoundError, match='t10k-images-idx3-ubyte.*never downloads'):
        FashionMNIST(tmp_path, train=False)


def test_mnist_missing_corrupt_and_mismatched_files(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"'train-images-idx3-ubyte'.*yann.lecun.com"):
        MNIST(tmp_path / 'nowhere')
    write_mnist(tmp_path / 'trunc', images=REF['mnist/images_idx'][:-10])
    with pytest.raises(ValueError, match='truncated or corrupt'):
        MNIST(tmp_path / 'trunc', train=False)
    write_mnist(tmp_path / 'bad', images=np.frombuffer(b'PK\x03\x04junk', np.uint8))
    with pytest.raises(ValueError, match='not an IDX file'):
        MNIST(tmp_path / 'bad', train=False)
    lbl = REF['mnist/labels_idx'].copy()
    lbl = np.concatenate([lbl[:4], np.array([0, 0, 0, 4], np.uint8), lbl[8:-1]])
    write_mnist(tmp_path / 'count', labels=lbl)
    with pytest.raises(ValueError, match='5 images but .* 4 labels'):
        MNIST(tmp_path / 'count', train=False)


# ---- CIFAR ---------------------------------------------------------------------------------------
def test_cifar10_matches_gluon(tmp_path):
    sub = tmp_path / 'cifar-10-batches-bin'
    sub.mkdir()
    REF['cifar/bin'].tofile(sub / 'test_batch.bin')
    ds = CIFAR10(tmp_path, train=False)
    image, label = ds[2]
    assert image.shape == (32, 32, 3) and image.dtype == np.uint8 and type(label) is np.int32
    np.testing.assert_array_equal(image.asnumpy(), REF['cifar/data'][2])
    data, lab = next(iter(DataLoader(ds, batch_size=5)))
    np.testing.assert_array_equal(data.asnumpy(), REF['cifar/data'])
    np.testing.assert_array_equal(lab.asnumpy(), REF['cifar/label'])
    with pytest.raises(FileNotFoundError, match='data_batch_1.bin.*cifar-10-binary.tar.gz'):
        CIFAR10(tmp_path, train=True)


def test_cifar10_train_concatenates_batches_and_rejects_truncation(tmp_path):
    for i in range(1, 6):
        REF['cifar/bin'].tofile(tmp_path / f'data_batch_{i}.bin')
    ds = CIFAR10(str(tmp_path))
    assert len(ds) == 25
    np.testing.assert_array_equal(ds[7][0].asnumpy(), REF['cifar/data'][2])
    REF['cifar/bin'][:-1].tofile(tmp_path / 'test_batch.bin')
    with pytest.raises(ValueError, match='3073-byte records'):
        CIFAR10(tmp_path, train=False)


def test_cifar100_fine_and_coarse_labels(tmp_path):
    rng = np.random.RandomState(0)
    records = np.concatenate([rng.randint(0, 20, (3, 1)), rng.randint(0, 100, (3, 1)),
                              rng.randint(0, 256, (3, 3072))], axis=1).astype(np.uint8)
    records.tofile(tmp_path / 'test.bin')
    coarse = CIFAR100(tmp_path, train=False)
    fine = CIFAR100(tmp_path, fine_label=True, train=False)
    assert [int(coarse[i][1]) for i in range(3)] == records[:, 0].tolist()
    assert [int(fine[i][1]) for i in range(3)] == records[:, 1].tolist()
    np.testing.assert_array_equal(fine[1][0].asnumpy(),
                                  records[1, 2:].reshape(3, 32, 32).transpose(1, 2, 0))


# ---- transforms ----------------------------------------------------------------------------------
@pytest.mark.parametrize('case', ['hwc_u8', 'nhwc_u8', 'hwc_f32'])
def test_to_tensor_matches_gluon(ctx, case):
    x = REF[f'totensor/{case}/x']
    y = transforms.ToTensor()(xpnet.nd.array(x, ctx=ctx, dtype=x.dtype))
    assert y.dtype == np.float32 and y.context == ctx
    np.testing.assert_allclose(y.asnumpy(), REF[f'totensor/{case}/y'], rtol=1e-6)


@pytest.mark.parametrize('case', ['chw_tuple', 'nchw_tuple', 'chw_scalar', 'one_channel'])
def test_normalize_matches_gluon(ctx, case):
    x, mean, std = (REF[f'normalize/{case}/{k}'] for k in ('x', 'mean', 'std'))
    y = transforms.Normalize(tuple(mean.tolist()) if mean.ndim else float(mean),
                             tuple(std.tolist()) if std.ndim else float(std))(
        xpnet.nd.array(x, ctx=ctx))
    assert y.dtype == np.float32 and y.context == ctx
    np.testing.assert_allclose(y.asnumpy(), REF[f'normalize/{case}/y'], rtol=1e-5, atol=1e-7)


def test_transform_errors_and_cast():
    with pytest.raises(ValueError, match=r'mean has 2 values but the input has 3 channels'):
        transforms.Normalize((0.1, 0.2), 1.0)(xpnet.nd.ones((3, 2, 2)))
    with pytest.raises(ValueError, match=r'ToTensor: expected a HWC image .* shape \(4, 4\)'):
        transforms.ToTensor()(xpnet.nd.ones((4, 4)))
    with pytest.raises(ValueError, match='std must be non-zero'):
        transforms.Normalize(0.0, (1.0, 0.0))
    y = transforms.Cast('float64')(xpnet.nd.ones((2, 2)))
    assert y.dtype == np.float64
    assert transforms.Cast()(np.ones(3, np.uint8)).dtype == np.float32


def test_compose_pipeline_on_mnist_like_data(tmp_path):
    write_mnist(tmp_path)
    tf = transforms.Compose([transforms.ToTensor(), transforms.Normalize(0.1307, 0.3081),
                             lambda x: x.reshape(-1)])
    ds = MNIST(tmp_path, train=False).transform_first(tf)
    data, label = next(iter(DataLoader(ds, batch_size=4, num_workers=2)))
    assert data.shape == (4, 784) and data.dtype == np.float32
    expect = (REF['mnist/data'][:4].reshape(4, 784).astype(np.float32) / 255 - 0.1307) / 0.3081
    np.testing.assert_allclose(data.asnumpy(), expect, rtol=1e-5, atol=1e-6)
    assert label.asnumpy().tolist() == REF['mnist/label'][:4].tolist()


def test_random_flips_follow_xpnet_random():
    x = xpnet.nd.array(np.arange(24).reshape(2, 3, 4), dtype='uint8')
    flip = transforms.RandomFlipLeftRight()
    xpnet.random.seed(0)
    outs = [flip(x).asnumpy() for _ in range(20)]
    flipped = [not np.array_equal(o, x.asnumpy()) for o in outs]
    assert any(flipped) and not all(flipped)
    for o, f in zip(outs, flipped):
        np.testing.assert_array_equal(o, x.asnumpy()[:, ::-1] if f else x.asnumpy())
    xpnet.random.seed(0)
    assert [not np.array_equal(flip(x).asnumpy(), x.asnumpy()) for _ in range(20)] == flipped
    tb = [transforms.RandomFlipTopBottom()(x).asnumpy() for _ in range(10)]
    assert all(np.array_equal(o, x.asnumpy()) or np.array_equal(o, x.asnumpy()[::-1]) for o in tb)


# ---- Vocab ---------------------------------------------------------------------------------------
def ref_counter():
    return collections.Counter(dict(zip(REF['vocab/counter_tokens'].tolist(),
                                        REF['vocab/counter_counts'].tolist())))


@pytest.mark.parametrize('case,kw', [
    ('default', {}), ('most3', dict(most_freq_count=3)), ('min2', dict(min_freq=2)),
    ('reserved', dict(reserved_tokens=['<pad>', '<eos>'])),
    ('unk_reserved_most4', dict(unknown_token='<UNK>', reserved_tokens=['the'],
                                most_freq_count=4)),
])
def test_vocab_matches_gluon(case, kw):
    v = Vocab(ref_counter(), **kw)
    expect = REF[f'vocab/{case}/idx_to_token'].tolist()
    assert v.idx_to_token == expect and len(v) == len(expect)
    assert all(v.token_to_idx[t] == i for i, t in enumerate(expect))


def test_vocab_lookups_and_aliases():
    v = Vocab(ref_counter(), max_size=3)
    assert v.idx_to_token == REF['vocab/most3/idx_to_token'].tolist()
    assert v['the'] == 2 and v[['a', 'nope', 'b']] == [1, 0, 3] and v.to_indices('zz') == 0
    assert v.to_tokens(3) == 'b' and v.to_tokens([1, 2]) == ['a', 'the']
    assert v.to_tokens(np.array([3, 0])) == ['b', '<unk>']
    assert 'a' in v and 'zz' not in v and v.unknown_token == '<unk>'
    assert Vocabulary is Vocab and len(Vocab()) == 1
    with pytest.raises(ValueError, match=r'Token index 4 is invalid'):
        v.to_tokens([1, 4])
    with pytest.raises(ValueError, match='invalid'):
        v.to_tokens(1.0)
    with pytest.raises(ValueError, match='disagree'):
        Vocab(ref_counter(), most_freq_count=2, max_size=3)
    with pytest.raises(ValueError, match='unknown token'):
        Vocab(reserved_tokens=['<unk>'])
    with pytest.raises(ValueError, match='duplicates'):
        Vocab(reserved_tokens=['a', 'a'])
    with pytest.raises(ValueError, match='min_freq'):
        Vocab(min_freq=0)
    with pytest.raises(TypeError, match='Counter'):
        Vocab({'a': 1})


def test_count_tokens_matches_gluon():
    source = ' the cat sat on the mat \n The dog ate the cat food \n a b c a b a zz yy xx \n'
    counter = count_tokens_from_str(source, to_lower=True)
    expect = dict(zip(REF['count_tokens/tokens'].tolist(), REF['count_tokens/counts'].tolist()))
    assert dict(counter) == expect
    c = count_tokens(['a', 'B', 'b'], to_lower=True)
    assert c == collections.Counter({'b': 2, 'a': 1})
    assert count_tokens(['a'], counter=c) is c and c['a'] == 2


# ---- WikiText / LanguageModelDataset -------------------------------------------------------------
def write_wiki(root):
    os.makedirs(root, exist_ok=True)
    for seg in ('train', 'valid', 'test'):
        with open(os.path.join(root, f'wiki.{seg}.tokens'), 'w', encoding='utf8') as f:
            f.write(str(REF[f'wiki/{seg}.tokens']))


def check_lm(ds, case):
    ref_data, ref_label = REF[f'wiki/{case}/data'], REF[f'wiki/{case}/label']
    assert ds.vocabulary.idx_to_token == REF[f'wiki/{case}/idx_to_token'].tolist()
    assert len(ds) == len(ref_data)
    data, label = ds[1]
    assert data.dtype == np.int32 and label.dtype == np.int32
    np.testing.assert_array_equal(data.asnumpy(), ref_data[1])
    np.testing.assert_array_equal(label.asnumpy(), ref_label[1])
    d, lab = next(iter(DataLoader(ds, batch_size=len(ds))))
    np.testing.assert_array_equal(d.asnumpy(), ref_data)
    np.testing.assert_array_equal(lab.asnumpy(), ref_label)


def test_wikitext2_matches_gluon(tmp_path):
    write_wiki(tmp_path / 'wikitext-2')
    train = WikiText2(tmp_path, segment='train', seq_len=5)
    check_lm(train, 'train')
    assert train.frequencies['the'] > 0 and '<eos>' not in train.frequencies
    val = WikiText2(str(tmp_path), segment='validation', vocab=train.vocabulary, seq_len=5)
    check_lm(val, 'valid_trainvocab')
    assert val.vocabulary is train.vocabulary
    test = WikiText2(tmp_path, segment='test', seq_len=3)       # tab-joined token case
    check_lm(test, 'test_ownvocab')


def test_wikitext_files_and_errors(tmp_path):
    write_wiki(tmp_path)
    ds = WikiText103(tmp_path, segment='valid', seq_len=5)
    assert len(ds) > 0
    with pytest.raises(ValueError, match="segment must be 'train', 'validation' or 'test'"):
        WikiText2(tmp_path, segment='dev')
    with pytest.raises(FileNotFoundError, match=r'wiki.train.tokens.*wikitext-2-v1.zip'):
        WikiText2(tmp_path / 'empty')
    with pytest.raises(ValueError, match='seq_len'):
        WikiText2(tmp_path, seq_len=0)
    with pytest.raises(TypeError, match='Vocab'):
        WikiText2(tmp_path, vocab={'a': 1})


def test_language_model_dataset_from_path_and_text(tmp_path):
    text = 'a b c\n\n d e a\n'
    path = tmp_path / 'corpus.txt'
    path.write_text(text, encoding='utf8')
    ds = LanguageModelDataset(path, seq_len=2)
    same = LanguageModelDataset.from_text(text, seq_len=2)
    v = ds.vocabulary
    tokens = ['a', 'b', 'c', '<eos>', 'd', 'e', 'a', '<eos>']
    ids = v[tokens]
    assert v.idx_to_token[:3] == ['<unk>', '<eos>', 'a']
    assert len(ds) == 3                       # 7 (data, label) pairs -> 3 windows of 2
    for i in range(3):
        assert ds[i][0].asnumpy().tolist() == ids[2 * i:2 * i + 2]
        assert ds[i][1].asnumpy().tolist() == ids[2 * i + 1:2 * i + 3]
        assert same[i][0].asnumpy().tolist() == ds[i][0].asnumpy().tolist()
    with pytest.raises(FileNotFoundError, match='no such file'):
        LanguageModelDataset(tmp_path / 'missing.txt')


def test_word_lm_batching_with_interval_sampler():
    # the Gluon word-LM recipe: consecutive batches continue each row's text
    text = ' '.join(f'w{i}' for i in range(36))
    ds = LanguageModelDataset.from_text(text, seq_len=3)       # 36 words + <eos> -> 12 windows
    assert len(ds) == 12
    n_batch = len(ds) // 4
    loader = DataLoader(ds, batch_size=4, sampler=IntervalSampler(len(ds), n_batch),
                        last_batch='discard')
    to_pos = np.vectorize(lambda i: int(ds.vocabulary.to_tokens(int(i))[1:]))
    batches = [to_pos(data.asnumpy()) for data, _ in loader]
    assert len(batches) == 3
    np.testing.assert_array_equal(batches[0][:, 0], [0, 9, 18, 27])
    for b1, b2 in zip(batches, batches[1:]):
        np.testing.assert_array_equal(b2[:, 0], b1[:, -1] + 1)   # row r continues its stream


def test_transform_gradients_inside_a_recorded_graph(ctx):
    from gradcheck import check_grad
    x = np.random.RandomState(0).uniform(0, 1, (3, 2, 2))
    norm = transforms.Normalize((0.1, 0.2, 0.3), (0.5, 2.0, 4.0))
    check_grad(lambda a: norm(a), [x], ctx=ctx)
    # ToTensor's output is float32 by definition: a linear map checked with a coarse step
    hwc = np.ascontiguousarray(x.transpose(1, 2, 0)) * 255
    check_grad(lambda a: transforms.ToTensor()(a), [hwc], ctx=ctx,
               eps=1e-2, rtol=1e-3, atol=1e-6)


def test_gradcheck_handles_non_contiguous_inputs():
    # tests/gradcheck.py used to perturb a copy of non-C-contiguous inputs (numeric grad 0)
    from gradcheck import check_grad
    x = np.random.RandomState(1).uniform(size=(3, 4)).T
    check_grad(lambda a: a * 3.0, [x])
