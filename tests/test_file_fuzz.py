"""Fuzzing the file readers: seeded truncations and byte mutations of a valid MXNet
``.params`` file, an ``.npz`` parameter file, a trainer states file and a checkpoint record.
Each mutated file must load or raise the reader's documented error, without hanging and
without allocating much (the loads run in a child process under an address-space limit,
each behind a generous alarm that only guards against hangs)."""
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import zipfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
CASES_PER_FILE = 150
HEADROOM = 256 << 20          # address space a load may add to the child's


def mutate_bytes(raw, rng):
    """A truncation, a few random bytes, or a large integer written over 8 bytes."""
    kind = rng.randint(3)
    if kind == 0:
        return raw[:rng.randint(len(raw))]
    out = bytearray(raw)
    if kind == 1:
        for _ in range(rng.randint(1, 9)):
            out[rng.randint(len(out))] = rng.randint(256)
    else:
        value = [2 ** 63 - 1, 2 ** 64 - 1, 2 ** 31, 2 ** 32 - 1, 1 << 40,
                 int(rng.randint(1 << 30))][rng.randint(6)]
        at = rng.randint(len(out) - 8)
        out[at:at + 8] = value.to_bytes(8, 'little')
    return bytes(out)


def mutate(raw, rng):
    """Half of the time for an ``.npz``: mutate one member (its ``.npy`` header, data or
    JSON record) and zip it again with valid checksums, so the checks behind the zip
    layer are reached too."""
    if raw[:2] != b'PK' or rng.randint(2):
        return mutate_bytes(raw, rng)
    src, out = zipfile.ZipFile(io.BytesIO(raw)), io.BytesIO()
    names = src.namelist()
    victim = names[rng.randint(len(names))]
    with zipfile.ZipFile(out, 'w') as dst:
        for name in names:
            data = src.read(name)
            dst.writestr(name, mutate_bytes(data, rng) if name == victim else data,
                         zipfile.ZIP_DEFLATED if rng.randint(4) == 0 else zipfile.ZIP_STORED)
    return out.getvalue()


def build_files(workdir):
    """The valid files and, for each, ``(path, load, documented error)``."""
    import logging

    from xpnet import layers as nn
    from xpnet.handlers import CheckpointHandler
    from xpnet.handlers.checkpoint import CheckpointError
    from xpnet.trainer import StatesFileError
    sys.path.insert(0, HERE)
    from estimator_helpers import make_estimator, make_loader

    mlp = nn.HybridSequential()
    mlp.add(nn.Dense(5, activation='relu'), nn.BatchNorm(), nn.Dense(3))
    mx_path = os.path.join(workdir, 'mxnet.params')
    shutil.copy(os.path.join(HERE, 'data', 'mxnet_mlp.params'), mx_path)
    mlp.load_parameters(mx_path)

    est = make_estimator()
    est.logger.setLevel(logging.ERROR)
    handler = CheckpointHandler(workdir, 'm', epoch_period=1)
    est.fit(make_loader(), epochs=1, event_handlers=[handler])
    stem = handler.checkpoints()[0]
    npz_path = os.path.join(workdir, f'{stem}.params')
    states_path = os.path.join(workdir, f'{stem}.states')
    record_path = os.path.join(workdir, f'{stem}.progress')
    return {
        'mxnet': (mx_path, lambda p: mlp.load_parameters(p), nn.ParameterFileError),
        'npz': (npz_path, lambda p: est.net.load_parameters(p), nn.ParameterFileError),
        'states': (states_path, lambda p: est.trainer.load_states(p), StatesFileError),
        'record': (record_path, lambda p: handler.read(stem), CheckpointError),
    }


class _Hang(Exception):
    pass


def _alarm(signum, frame):
    raise _Hang()


def fuzz(workdir):
    """Run every case; print a JSON summary of outcomes and failures."""
    import resource
    files = build_files(workdir)
    with open('/proc/self/status') as f:
        vm = next(int(line.split()[1]) * 1024 for line in f if line.startswith('VmSize'))
    resource.setrlimit(resource.RLIMIT_AS, (vm + HEADROOM, vm + HEADROOM))
    signal.signal(signal.SIGALRM, _alarm)
    rng = np.random.RandomState(0)
    summary = {'failures': [], 'outcomes': {}}
    for kind, (path, load, error) in files.items():
        with open(path, 'rb') as f:
            raw = f.read()
        counts = summary['outcomes'][kind] = {'loaded': 0, 'refused': 0}
        for case in range(CASES_PER_FILE):
            with open(path, 'wb') as f:
                f.write(mutate(raw, rng))
            signal.setitimer(signal.ITIMER_REAL, 10.0)      # a hang guard, not a timing test
            try:
                load(path)
                counts['loaded'] += 1
            except error:
                counts['refused'] += 1
            except BaseException as err:   # a hang, MemoryError or an undocumented error
                summary['failures'].append(f'{kind} case {case}: {type(err).__name__}: {err}')
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
        with open(path, 'wb') as f:     # the checkpoint record checks the other files
            f.write(raw)
    print(json.dumps(summary))


def test_mutated_files_load_or_raise_the_documented_error(tmp_path):
    env = dict(os.environ, OPENBLAS_NUM_THREADS='1', XPNET_HOST_THREADS='1')
    proc = subprocess.run([sys.executable, __file__, str(tmp_path)], capture_output=True,
                          text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary['failures'] == [], '\n'.join(summary['failures'][:20])
    for kind, counts in summary['outcomes'].items():
        assert counts['refused'] > CASES_PER_FILE // 3, (kind, counts)
    # some mutations leave a loadable file (e.g. MXNet data bytes, JSON digits)
    assert sum(c['loaded'] for c in summary['outcomes'].values()) > 0


if __name__ == '__main__':
    fuzz(sys.argv[1])
