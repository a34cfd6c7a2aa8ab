"""xpnet.serialization and the MXNet .params reader on crafted, untrusted files: every bad
file raises the documented error at once, before anything larger than expected is
allocated (measured with tracemalloc)."""
import io
import json
import os
import struct
import tracemalloc
import zlib

import numpy as np
import pytest

import xpnet
from xpnet import layers as nn
from xpnet.handlers import CheckpointHandler
from xpnet.layers.mxnet_params import read_mxnet_params
from xpnet.serialization import (FileFormatError, atomic_write, check_schema, load_npz,
                                 load_record, parse_json, read_npz_headers, save_npz,
                                 stale_temp_files)
from xpnet.trainer import StatesFileError

MB = 1 << 20


def npy_header(shape, descr='<f4', fortran=False):
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buf, {'descr': descr, 'fortran_order': fortran, 'shape': tuple(shape)})
    return buf.getvalue()


def zip_archive(members):
    """A zip file by hand, so that sizes can lie: ``members`` are ``(name, payload,
    method, declared_size, crc)`` with ``payload`` already compressed for ``method``."""
    out, central = io.BytesIO(), []
    for name, payload, method, size, crc in members:
        offset = out.tell()
        raw = name.encode()
        out.write(struct.pack('<IHHHHHIIIHH', 0x04034b50, 20, 0, method, 0, 0x21, crc,
                              len(payload), size, len(raw), 0) + raw + payload)
        central.append(struct.pack('<IHHHHHHIIIHHHHHII', 0x02014b50, 20, 20, 0, method, 0,
                                   0x21, crc, len(payload), size, len(raw), 0, 0, 0, 0, 0,
                                   offset) + raw)
    start = out.tell()
    cd = b''.join(central)
    out.write(cd + struct.pack('<IHHHHIIH', 0x06054b50, 0, 0, len(members), len(members),
                               len(cd), start, 0))
    return out.getvalue()


def deflated_zeros(header, nbytes):
    """``header`` followed by ``nbytes`` zero bytes, raw-deflated chunk by chunk."""
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    parts, crc, chunk = [c.compress(header)], zlib.crc32(header), bytes(MB)
    for start in range(0, nbytes, MB):
        piece = chunk[:min(MB, nbytes - start)]
        parts.append(c.compress(piece))
        crc = zlib.crc32(piece, crc)
    parts.append(c.flush())
    return b''.join(parts), crc


def peak_bytes(fn):
    """``fn()``'s exception (or None) and the peak of Python-tracked allocations."""
    tracemalloc.start()
    try:
        fn()
        err = None
    except Exception as e:      # the caller checks the type
        err = e
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return err, peak


def small_net():
    net = nn.HybridSequential()
    net.add(nn.Dense(64, in_units=20), nn.Dense(3, in_units=64))
    net.initialize()
    return net


# ---- .npz ----------------------------------------------------------------------------------------

def test_round_trip_and_headers(tmp_path):
    path = str(tmp_path / 'a.npz')
    arrays = {'w': np.arange(6, dtype=np.float32).reshape(2, 3), 'n': np.int64(7),
              'f': np.asfortranarray(np.arange(6.).reshape(2, 3)), 's': np.array('{"a": 1}')}
    save_npz(path, arrays)
    headers = read_npz_headers(path)
    assert headers['w'].shape == (2, 3) and headers['w'].dtype == np.float32
    assert headers['f'].fortran_order and headers['w'].nbytes == 24
    out = load_npz(path)
    for k, v in arrays.items():
        np.testing.assert_array_equal(out[k], v)
        assert out[k].dtype == np.asarray(v).dtype
    assert list(load_npz(path, select=lambda h: ['w'])) == ['w']


def test_compressed_bomb_is_refused_from_its_header(tmp_path):
    """A 64 MB deflated array where a (64, 20) weight is expected: refused after reading
    its header, allocating almost nothing."""
    net = small_net()
    header = npy_header((4096, 4096))
    payload, crc = deflated_zeros(header, 64 * MB)
    path = tmp_path / 'bomb.params'
    path.write_bytes(zip_archive([('0.weight.npy', payload, 8, len(header) + 64 * MB, crc)]))
    assert path.stat().st_size < MB
    err, peak = peak_bytes(lambda: net.load_parameters(str(path), allow_missing=True))
    assert isinstance(err, nn.ParameterFileError)
    assert '(64, 20)' in str(err) and '(4096, 4096)' in str(err)
    assert peak < 2 * MB


def test_ignored_extra_arrays_are_never_decompressed(tmp_path):
    net = small_net()
    members = []
    for name, p in net.collect_params().items():
        data = npy_header(p.shape) + p.data().asnumpy().astype('<f4').tobytes()
        members.append((name + '.npy', data, 0, len(data), zlib.crc32(data)))
    header = npy_header((4096, 4096))
    payload, crc = deflated_zeros(header, 64 * MB)
    members.append(('extra.npy', payload, 8, len(header) + 64 * MB, crc))
    path = tmp_path / 'extra.params'
    path.write_bytes(zip_archive(members))
    with pytest.raises(nn.ParameterFileError, match="has 1 parameter.*extra.*ignore_extra"):
        net.load_parameters(str(path))
    err, peak = peak_bytes(lambda: net.load_parameters(str(path), ignore_extra=True))
    assert err is None and peak < 2 * MB


def test_declared_sizes_cannot_lie(tmp_path):
    """A header that understates the listed size, or a listed size that understates the
    stream: refused, or read only up to what the header declares."""
    header = npy_header((4,))
    payload, crc = deflated_zeros(header, 16 * MB)
    lying = tmp_path / 'lying.npz'
    lying.write_bytes(zip_archive([('w.npy', payload, 8, len(header) + 16 * MB, crc)]))
    with pytest.raises(FileFormatError, match='declares shape'):
        load_npz(str(lying))
    # the listed size matches the header, the stream holds 16 MB more: only 16 bytes read
    crc = zlib.crc32(header + bytes(16))
    capped = tmp_path / 'capped.npz'
    capped.write_bytes(zip_archive([('w.npy', payload, 8, len(header) + 16, crc)]))
    out, peak = None, 0

    def load():
        nonlocal out
        out = load_npz(str(capped))
    err, peak = peak_bytes(load)
    assert err is None and out['w'].shape == (4,) and peak < 2 * MB


MALFORMED = {'duplicate': 'appears twice', 'not_npy': 'not a .npy array',
             'past_the_end': 'extends past the end',
             'bzip2': 'compression method 12', 'overlap': 'members overlap',
             'negative': 'negative shape', 'object': 'dtype object',
             'structured': 'structured', 'huge_header': 'Header info length'}


@pytest.mark.parametrize('case', sorted(MALFORMED))
def test_malformed_archives(tmp_path, case):
    header = npy_header((2,))
    data = header + bytes(8)
    crc = zlib.crc32(data)
    member = ('w.npy', data, 0, len(data), crc)
    if case == 'duplicate':
        raw = zip_archive([member, member])
    elif case == 'not_npy':
        raw = zip_archive([('w.txt', data, 0, len(data), crc)])
    elif case == 'past_the_end':
        # a member listing 4 GB of compressed data in a tiny file (could claim 4 TB)
        raw = zip_archive([member])
        at = raw.index(b'PK\x01\x02') + 20          # the central entry's compressed size
        raw = raw[:at] + struct.pack('<I', 0xFFFFFFF0) + raw[at + 4:]
    elif case == 'bzip2':
        raw = zip_archive([('w.npy', data, 12, len(data), crc)])
    elif case == 'overlap':
        # a stored member whose data is a whole second member: two names, one payload
        inner = zip_archive([('v.npy', data, 0, len(data), crc)])
        inner = inner[:30 + 5 + len(data)]
        raw = zip_archive([('w.npy', inner, 0, len(inner), zlib.crc32(inner))])
        cd_at = struct.unpack('<I', raw[-6:-2])[0]
        extra = struct.pack('<IHHHHHHIIIHHHHHII', 0x02014b50, 20, 20, 0, 0, 0, 0x21, crc,
                            len(data), len(data), 5, 0, 0, 0, 0, 0, 30 + 5) + b'v.npy'
        cd = raw[cd_at:-22] + extra
        raw = raw[:cd_at] + cd + struct.pack('<IHHHHIIH', 0x06054b50, 0, 0, 2, 2, len(cd),
                                             cd_at, 0)
    else:
        bad = {'negative': npy_header((-1,)), 'object': npy_header((2,), '|O'),
               'structured': npy_header((2,), [('a', '<f4')]),
               'huge_header': b'\x93NUMPY\x01\x00' + struct.pack('<H', 65000) + b' ' * 65000}
        data = bad[case] + bytes(8)
        raw = zip_archive([('w.npy', data, 0, len(data), zlib.crc32(data))])
    path = tmp_path / 'bad.npz'
    path.write_bytes(raw)
    with pytest.raises(FileFormatError, match=f'bad.npz.*{MALFORMED[case]}'):
        load_npz(str(path))


def test_record_may_not_expand_beyond_the_file(tmp_path):
    meta = np.frombuffer(json.dumps({'format': 'x'}).encode(), dtype=np.uint8)
    path = str(tmp_path / 'r.progress')
    save_npz(path, {'__meta__': meta, 'order': np.arange(10)})
    got, arrays = load_record(path, 'record')
    assert got == {'format': 'x'} and arrays['order'].tolist() == list(range(10))
    buf = io.BytesIO()
    np.savez_compressed(buf, __meta__=meta, order=np.zeros(MB))
    (tmp_path / 'z.progress').write_bytes(buf.getvalue())
    with pytest.raises(FileFormatError, match='more than the'):
        load_record(str(tmp_path / 'z.progress'), 'record')


def test_parse_json_bounds_and_types():
    assert parse_json(b'{"a": [1, 2]}', 'rec') == {'a': [1, 2]}
    with pytest.raises(FileFormatError, match='larger than 10 bytes'):
        parse_json(b'{"a": "0123456789"}', 'rec', max_bytes=10)
    with pytest.raises(FileFormatError, match='corrupt'):
        parse_json(b'[' * 100000 + b']' * 100000, 'rec')
    with pytest.raises(FileFormatError, match='corrupt'):
        parse_json(b'{"a": \xff}', 'rec')
    with pytest.raises(FileFormatError, match='expected a JSON dict, got list'):
        parse_json('[1]', 'rec')


def test_trainer_states_metadata_is_type_checked(tmp_path):
    net = small_net()
    trainer = xpnet.Trainer(net.collect_params(), 'sgd', {'momentum': 0.9})
    path = str(tmp_path / 't.states')
    trainer.save_states(path)
    arrays = load_npz(path)
    meta = json.loads(str(arrays['__meta__']))
    for mutate in (lambda m: m['optimizer']['hyper'].update(update='not a method'),
                   lambda m: m['params'][0].update(shape=[-1, 2]),
                   lambda m: m['params'].append(7),
                   lambda m: m['optimizer'].update(lr_mult={'a': 1})):
        bad = json.loads(json.dumps(meta))
        mutate(bad)
        save_npz(path, dict(arrays, __meta__=np.array(json.dumps(bad))))
        with pytest.raises(StatesFileError, match='t.states'):
            trainer.load_states(path)
    # a state array larger than its parameter is refused before it is read
    save_npz(path, dict(arrays, s0_0=np.zeros((64, 200), np.float64)))
    with pytest.raises(StatesFileError, match='larger than its parameter'):
        trainer.load_states(path)


# ---- writing -------------------------------------------------------------------------------------

def test_atomic_write_leaves_the_old_file_and_no_temp_on_error(tmp_path):
    path = str(tmp_path / 'f.bin')
    with atomic_write(path) as f:
        f.write(b'old')
    with pytest.raises(RuntimeError):
        with atomic_write(path) as f:
            f.write(b'new, half written')
            raise RuntimeError('disk full')
    assert open(path, 'rb').read() == b'old'
    assert os.listdir(tmp_path) == ['f.bin']


def test_stale_temp_files_names_only_the_writers_leftovers(tmp_path):
    target = str(tmp_path / 'model-epoch1.params')
    for name in ('.model-epoch1.params.abc123.tmp', '.model-epoch10.params.x.tmp',
                 'model-epoch1.params.tmp', '.other.abc.tmp'):
        (tmp_path / name).write_bytes(b'')
    assert [os.path.basename(p) for p in stale_temp_files(target)] == \
        ['.model-epoch1.params.abc123.tmp']


# ---- MXNet .params -------------------------------------------------------------------------------

def mx_file(records, names=None, header=(0x112, 0)):
    out = struct.pack('<QQ', *header) + struct.pack('<Q', len(records)) + b''.join(records)
    names = names if names is not None else [f'p{i}'.encode() for i in range(len(records))]
    out += struct.pack('<Q', len(names))
    for n in names:
        out += struct.pack('<Q', len(n)) + n
    return out


def mx_record(shape, flag=0, data=None, magic=0xF993FAC9):
    data = bytes(4 * int(np.prod(shape))) if data is None else data
    return (struct.pack('<Iii', magic, 0, len(shape)) + struct.pack(f'<{len(shape)}q', *shape)
            + struct.pack('<iii', 1, 0, flag) + data)


def test_mxnet_reader_reads_a_crafted_valid_file(tmp_path):
    path = tmp_path / 'ok.params'
    path.write_bytes(mx_file([mx_record((2, 3), data=np.arange(6, dtype='<f4').tobytes()),
                              mx_record((4,), flag=6, data=np.arange(4).astype('<i8').tobytes())]))
    out = read_mxnet_params(str(path))
    np.testing.assert_array_equal(out['p0'], np.arange(6, dtype=np.float32).reshape(2, 3))
    assert out['p1'].dtype == np.int64 and out['p1'].tolist() == [0, 1, 2, 3]


CRAFTED = {'negative_dim': 'negative shape', 'huge_count': 'declares 4611686018427387904 arrays',
           'huge_dim': 'array data of 4398046511104 bytes', 'huge_ndim': '1073741824 dimensions',
           'bad_flag': 'dtype flag 99', 'huge_name': 'name bytes', 'bad_utf8': 'not UTF-8',
           'trailing': 'unexpected bytes', 'names': '2 arrays but 1 names',
           'duplicate': 'appears twice', 'sparse': 'sparse', 'old_magic': 'record magic'}


@pytest.mark.parametrize('case', sorted(CRAFTED))
def test_mxnet_reader_refuses_crafted_files_at_once(tmp_path, case):
    rec = mx_record((2,))
    files = {
        # a record of shape (10, -1): its -40 data bytes sent the old reader back to the
        # record's start, reading it again for ever (with a count of 2**62)
        'negative_dim': struct.pack('<QQQ', 0x112, 0, 3) + struct.pack(
            '<Iiiqq', 0xF993FAC9, 0, 2, 10, -1) + struct.pack('<iii', 1, 0, 0),
        'huge_count': struct.pack('<QQQ', 0x112, 0, 1 << 62) + rec,
        'huge_dim': mx_file([mx_record((1 << 40,), data=b'')]),
        'huge_ndim': mx_file([struct.pack('<Iii', 0xF993FAC9, 0, 1 << 30)]),
        'bad_flag': mx_file([mx_record((2,), flag=99)]),
        'huge_name': mx_file([rec])[:-10] + struct.pack('<Q', 1 << 60) + b'p0',
        'bad_utf8': mx_file([rec], names=[b'\xff\xfe']),
        'trailing': mx_file([rec]) + b'junk',
        'names': mx_file([rec, rec], names=[b'a']),
        'duplicate': mx_file([rec, rec], names=[b'a', b'a']),
        'sparse': mx_file([struct.pack('<Iii', 0xF993FAC9, 1, 1)]),
        'old_magic': mx_file([mx_record((2,), magic=0xF993FAC8)]),
    }
    path = tmp_path / 'crafted.params'
    path.write_bytes(files[case])
    net = small_net()
    err, peak = peak_bytes(lambda: net.load_parameters(str(path)))
    assert isinstance(err, nn.ParameterFileError), repr(err)
    assert 'crafted.params' in str(err) and CRAFTED[case] in str(err)
    assert peak < MB


def test_mxnet_file_checked_against_the_block_before_copying(tmp_path):
    path = tmp_path / 'net.params'
    w = np.ones((64, 20), '<f4').tobytes()
    path.write_bytes(mx_file([mx_record((64, 20), data=w), mx_record((7,))],
                             names=[b'arg:0.weight', b'aux:0.bias']))
    net = small_net()
    with pytest.raises(nn.ParameterFileError, match=r"'0.bias' has shape \(64,\).*\(7,\)"):
        net.load_parameters(str(path), allow_missing=True)
    path.write_bytes(mx_file([mx_record((64, 20), data=w)], names=[b'arg:0.weight']))
    net.load_parameters(str(path), allow_missing=True)
    np.testing.assert_array_equal(net[0].weight.data().asnumpy(), np.ones((64, 20)))


def test_checkpoint_record_reader_refuses_a_compressed_bomb(tmp_path):
    handler = CheckpointHandler(str(tmp_path), 'm')
    buf = io.BytesIO()
    meta = np.frombuffer(json.dumps({'format': 'xpnet-checkpoint'}).encode(), np.uint8)
    np.savez_compressed(buf, __meta__=meta, loader=np.zeros(4 * MB))
    (tmp_path / 'm-epoch1batch1.progress').write_bytes(buf.getvalue())
    from xpnet.handlers.checkpoint import CheckpointError
    err, peak = peak_bytes(lambda: handler.read('m-epoch1batch1'))
    assert isinstance(err, CheckpointError) and peak < MB


def test_check_schema_names_the_offending_field():
    schema = {'version': int, 'files': [{'name': str, 'size': int}], 'at': (int, float)}
    check_schema({'version': 1, 'files': [{'name': 'a', 'size': 3}], 'at': 1.5, 'x': None},
                 schema, 'rec')
    for bad, where in [({'version': True}, r'record.version must be int, got bool'),
                       ({'files': {}}, r'record.files must be a list'),
                       ({'files': [{'name': 'a', 'size': '3'}]}, r'record.files\[0\].size'),
                       ({'at': 'now'}, r'record.at must be int or float')]:
        value = {'version': 1, 'files': [], 'at': 0}
        value.update(bad)
        with pytest.raises(FileFormatError, match=where):
            check_schema(value, schema, 'rec')
    with pytest.raises(FileFormatError, match="lacks 'version'"):
        check_schema({}, schema, 'rec')


def test_checkpoint_record_with_wrong_types_is_an_invalid_checkpoint(tmp_path):
    from xpnet.handlers.checkpoint import CheckpointError
    handler = CheckpointHandler(str(tmp_path), 'm')
    meta = {'format': 'xpnet-checkpoint', 'version': 1, 'saved_at': 0, 'checkpoint': 'm',
            'params': ['not', 'a', 'file record'], 'states': {}, 'training': {}}
    save_npz(str(tmp_path / 'm-epoch1batch1.progress'),
             {'__meta__': np.frombuffer(json.dumps(meta).encode(), np.uint8)})
    with pytest.raises(CheckpointError, match='record.params must be an object'):
        handler.read('m-epoch1batch1')
