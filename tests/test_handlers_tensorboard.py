"""TensorBoardHandler: event files written and readable (TFRecord framing checked with an
independent CRC-32C, events parsed with tensorboardX's protobuf)."""
import glob
import os
import struct

import numpy as np
import pytest

from xpnet.handlers import EpochEnd, TensorBoardHandler, ValidationHandler

from estimator_helpers import make_estimator, make_loader


def _crc32c_table():
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


_TABLE = _crc32c_table()


def _masked_crc32c(data):
    crc = 0xFFFFFFFF
    for byte in data:
        crc = _TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    crc ^= 0xFFFFFFFF
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def read_events(log_dir):
    """Every Event in the event files of ``log_dir`` (TFRecord: length, crc, data, crc)."""
    from tensorboardX.proto import event_pb2
    events = []
    files = sorted(glob.glob(os.path.join(log_dir, 'events.out.tfevents.*')))
    assert files, f'no event file in {log_dir}'
    for path in files:
        with open(path, 'rb') as f:
            data = f.read()
        pos = 0
        while pos < len(data):
            header = data[pos:pos + 8]
            (length,) = struct.unpack('<Q', header)
            (length_crc,) = struct.unpack('<I', data[pos + 8:pos + 12])
            assert length_crc == _masked_crc32c(header), 'corrupt record length'
            payload = data[pos + 12:pos + 12 + length]
            (payload_crc,) = struct.unpack('<I', data[pos + 12 + length:pos + 16 + length])
            assert payload_crc == _masked_crc32c(payload), 'corrupt record payload'
            pos += 16 + length
            event = event_pb2.Event()
            event.ParseFromString(payload)
            events.append(event)
    return events


def scalars(events):
    out = {}
    for e in events:
        for v in e.summary.value:
            if v.HasField('simple_value'):
                out.setdefault(v.tag, []).append((e.step, v.simple_value))
    return out


def histograms(events):
    out = {}
    for e in events:
        for v in e.summary.value:
            if v.HasField('histo'):
                out.setdefault(v.tag, []).append((e.step, v.histo))
    return out


def test_epoch_scalars_for_every_metric_and_learning_rate(tmp_path):
    est = make_estimator()
    history = est.fit(make_loader(), val_data=make_loader(), epochs=3,
                      event_handlers=[TensorBoardHandler(str(tmp_path))])
    events = read_events(str(tmp_path))
    assert events[0].file_version == 'brain.Event:2'
    s = scalars(events)
    assert set(s) == {'accuracy/training', 'softmaxcrossentropyloss/training',
                      'accuracy/validation', 'softmaxcrossentropyloss/validation',
                      'learning_rate'}
    for tag, name in [('accuracy/training', 'training accuracy'),
                      ('softmaxcrossentropyloss/validation',
                       'validation softmaxcrossentropyloss')]:
        assert [step for step, _ in s[tag]] == [0, 1, 2]
        np.testing.assert_allclose([v for _, v in s[tag]], history[name], rtol=1e-6)
    assert [v for _, v in s['learning_rate']] == pytest.approx([0.1] * 3)


def test_batch_scalars_and_histograms(tmp_path):
    est = make_estimator()
    est.fit(make_loader(), epochs=2, event_handlers=[
        TensorBoardHandler(str(tmp_path), batch_period=2, histogram_period=2)])
    events = read_events(str(tmp_path))
    s = scalars(events)
    assert [step for step, _ in s['batch/accuracy/training']] == [2, 4, 6]
    assert [step for step, _ in s['batch/learning_rate']] == [2, 4, 6]
    assert 'accuracy/validation' not in s            # no validation ran
    h = histograms(events)
    assert set(h) == {f'{kind}/{p}' for kind in ('weights', 'gradients')
                      for p in ('0.weight', '0.bias', '1.weight', '1.bias')}
    step, histo = h['weights/0.weight'][0]
    assert step == 1 and histo.num == 48            # only after epoch 2 (index 1)
    w = est.net.collect_params()['0.weight'].data().asnumpy()
    assert histo.min == pytest.approx(w.min()) and histo.max == pytest.approx(w.max())


def test_validation_scalars_only_when_validation_ran(tmp_path):
    est = make_estimator()
    est.fit(make_loader(), epochs=3, event_handlers=[
        TensorBoardHandler(str(tmp_path)),
        ValidationHandler(make_loader(), est.evaluate, epoch_period=2)])
    s = scalars(read_events(str(tmp_path)))
    assert [step for step, _ in s['accuracy/validation']] == [1]


def test_files_closed_at_train_end_even_on_error(tmp_path):
    handler = TensorBoardHandler(str(tmp_path))
    est = make_estimator()

    class Boom(EpochEnd):
        priority = 5

        def epoch_end(self, e, *args, **kwargs):
            raise RuntimeError('boom')

    with pytest.raises(RuntimeError, match='boom'):
        est.fit(make_loader(), epochs=2, event_handlers=[handler, Boom()])
    assert handler.writer is None
    s = scalars(read_events(str(tmp_path)))
    assert [step for step, _ in s['accuracy/training']] == [0]
