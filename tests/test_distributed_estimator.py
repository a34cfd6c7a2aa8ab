"""The Estimator across MPI ranks (issue 12, item 5): global metrics, one writer, agreed
stops, exact resumes, sharded validation without duplicates.

The multi-rank checks run in ``tests/dist_estimator_worker.py`` under ``mpiexec`` (skipped
without mpi4py/mpiexec); the single-process reference of the equivalence check is the same
code run here. The rest test the pieces that need no second process.
"""
import json
import os

import numpy as np
import pytest

import xpnet
from xpnet import metric as M
from xpnet.data import ArrayDataset, DataLoader, SplitSampler
from xpnet.estimator import _distributed

import dist_estimator_worker as worker
from test_distributed import HERE, _passed, run_ranks

ESTIMATOR_WORKER = os.path.join(HERE, 'dist_estimator_worker.py')


def test_estimator_across_two_ranks(tmp_path):
    checks = ['equivalence', 'resume', 'stops']
    proc = run_ranks(2, str(tmp_path), *checks, script=ESTIMATOR_WORKER)
    _passed(proc, checks)
    # one log: rank 0's lines only (both ranks write to this stdout)
    lines = {'[Epoch 0] Begin': 1, '[Epoch 2] Finished': 2,     # validation and training
             'Train finished': 1, 'Validation Begin': 4}
    for line, count in lines.items():
        assert proc.stdout.count(line) == count, (line, proc.stdout)
    assert proc.stdout.count("metric 'rank_answer' (RankZeroOnly) overrides get()") == 1
    assert 'KeyboardInterrupt on one rank of the job: no checkpoint is saved now' \
        in proc.stdout
    # two ranks on shards == one process on the whole batch, through the Estimator
    est, history = worker.fit_run()
    got = np.load(tmp_path / 'equivalence.npz')
    for k, p in est.net.collect_params().items():
        np.testing.assert_allclose(got[k], p.data().asnumpy(), rtol=2e-5, atol=2e-6,
                                   err_msg=k)
    saved = json.loads((tmp_path / 'equivalence.json').read_text())
    for name, values in saved['history'].items():
        np.testing.assert_allclose(values, history[name], rtol=1e-5, err_msg=name)
    for name in ('training accuracy', 'validation accuracy', 'validation pcc'):
        assert saved['history'][name] == history[name], name       # counts: exact
    evaluated = est.evaluate(worker.loaders(val_batch=4)[1])
    for name, value in evaluated.items():
        np.testing.assert_allclose(saved['evaluated'][name], value, rtol=1e-5, err_msg=name)
