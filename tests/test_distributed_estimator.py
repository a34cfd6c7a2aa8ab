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
# ranks sharing one GPU reduce through the host (NCCL refuses two ranks per GPU)
SHARED_GPU = {'XPNET_DIST_DEVICE_COMM': 'host'} if xpnet.num_gpus() < 2 else {}


def test_estimator_across_two_ranks(tmp_path):
    checks = ['equivalence', 'resume', 'stops', 'defaults']
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
    assert proc.stdout.count('val_data is not sharded across the 2 ranks') == 1
    assert proc.stdout.count('train_data is not sharded across the 2 ranks') == 1
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
    # gradient accumulation and clipping of the global mean gradient
    clipped, _ = worker.fit_run(**worker.ACCUMULATE_CLIP)
    got = np.load(tmp_path / 'clipped.npz')
    for k, p in clipped.net.collect_params().items():
        np.testing.assert_allclose(got[k], p.data().asnumpy(), rtol=2e-5, atol=2e-6,
                                   err_msg=k)


def test_distributed_example_writes_one_log_and_one_set_of_checkpoints(tmp_path):
    pytest.importorskip('sklearn')
    script = os.path.join(os.path.dirname(HERE), 'examples', 'train_digits_distributed.py')
    proc = run_ranks(2, '--epochs', '3', '--out', str(tmp_path), '--no-progress-bar',
                     script=script, timeout=300, **SHARED_GPU)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    final = [ln for ln in proc.stdout.splitlines() if ln.startswith('validation accuracy')]
    assert len(final) == 1 and 'on 2 rank(s)' in final[0], proc.stdout
    assert float(final[0].split()[2]) > 0.8
    assert proc.stdout.count('[Epoch 2] Begin') == 1
    assert sorted(os.listdir(tmp_path)) == ['checkpoints', 'log.csv', 'tensorboard']
    assert sorted(os.listdir(tmp_path / 'checkpoints')) == sorted(
        f'digits-{s}.{e}' for s in ('best', 'epoch1batch46', 'epoch2batch69')
        for e in ('params', 'progress', 'states'))
    assert len((tmp_path / 'log.csv').read_text().splitlines()) == 4
    assert len(os.listdir(tmp_path / 'tensorboard')) == 1


# ---- one process: the pieces ---------------------------------------------------------------

def _metric_cases():
    rng = np.random.default_rng(0)
    lab = rng.integers(0, 3, 40).astype(np.float32)
    prob = rng.random((40, 3)).astype(np.float32)
    prob /= prob.sum(1, keepdims=True)
    blab = rng.integers(0, 2, 40).astype(np.float32)
    bpred = rng.random((40, 2)).astype(np.float32)
    reg = rng.normal(size=40).astype(np.float32)
    reg_pred = (reg + rng.normal(size=40) * 0.5).astype(np.float32)
    return [(M.Accuracy, (), lab, prob), (M.TopKAccuracy, (2,), lab, prob),
            (M.CrossEntropy, (), lab, prob), (M.Perplexity, (None,), lab, prob),
            (M.F1, ('f1', None, None, 'micro'), blab, bpred),
            (M.MCC, ('mcc', None, None, 'micro'), blab, bpred),
            (M.PCC, (), lab, prob), (M.PearsonCorrelation, ('p', None, None, 'micro'),
                                     reg, reg_pred),
            (M.MAE, (), reg, reg_pred), (M.Loss, (), None, reg_pred),
            (lambda: M.create(['acc', 'pcc']), (), lab, prob)]


@pytest.mark.parametrize('case', _metric_cases(), ids=lambda c: getattr(c[0], '__name__', 'c'))
def test_merged_statistics_are_those_of_the_whole_data(case):
    """Each rank's reduction_state(), merged in rank order, gives the metric of all the
    data: exactly for counts, to rounding for sums (per-batch metrics such as MAE average
    the parts' values, as one process does over devices)."""
    make, args, label, pred = case
    whole, parts = make(*args), [make(*args) for _ in range(3)]
    whole.update(label if label is None else xpnet.nd.array(label), xpnet.nd.array(pred))
    for part, rows in zip(parts, np.array_split(np.arange(40), 3)):
        part.update(None if label is None else xpnet.nd.array(label[rows]),
                    xpnet.nd.array(pred[rows]))
    merged = parts[0].merged([p.reduction_state() for p in parts])
    name, value = merged.get()
    if isinstance(whole, M.MAE):         # the mean of three batches' errors
        expected = np.mean([p.get()[1] for p in parts])
    else:
        expected = whole.get()[1]
    assert name == whole.get()[0] and M.mergeable(whole)
    # float32 sums (the loss) round differently in parts
    np.testing.assert_allclose(value, expected, rtol=1e-6 if label is None else 1e-12)
    for part, rows in zip(parts, np.array_split(np.arange(40), 3)):   # parts untouched
        fresh = make(*args)
        fresh.update(None if label is None else xpnet.nd.array(label[rows]),
                     xpnet.nd.array(pred[rows]))
        assert part.get() == fresh.get()


def test_pcc_merges_parts_that_saw_different_classes():
    a, b, whole = M.PCC(), M.PCC(), M.PCC()
    la, pa = np.array([0, 1, 1, 0]), np.eye(2)[[0, 1, 0, 0]]
    lb, pb = np.array([3, 2, 3, 1]), np.eye(4)[[3, 2, 1, 1]]
    a.update(xpnet.nd.array(la), xpnet.nd.array(pa))
    b.update(xpnet.nd.array(lb), xpnet.nd.array(pb))
    whole.update(xpnet.nd.array(la), xpnet.nd.array(np.eye(4)[[0, 1, 0, 0]]))
    whole.update(xpnet.nd.array(lb), xpnet.nd.array(pb))
    assert a.k == 2 and b.k == 4
    assert a.merged([a.reduction_state(), b.reduction_state()]).get() == whole.get()


def test_mergeable_tells_which_user_metrics_need_their_own_merge():
    class CountsOnly(M.EvalMetric):          # keeps sum_metric/num_inst: merges as is
        def update(self, labels, preds):
            self._accumulate(1.0, 2)

    class OwnGet(M.EvalMetric):
        def update(self, labels, preds):
            self.best = 3.0

        def get(self):
            return self.name, self.best

    class OwnGetAndMerge(OwnGet):
        def reduction_state(self):
            return np.array([self.best])

        def merged(self, states):
            out = OwnGetAndMerge('own')
            out.best = max(s[0] for s in states)
            return out

    assert M.mergeable(CountsOnly('c')) and not M.mergeable(OwnGet('o'))
    assert M.mergeable(OwnGetAndMerge('m'))
    assert not M.mergeable(M.CompositeEvalMetric([M.Accuracy(), OwnGet('o')]))
    m = OwnGetAndMerge('m')
    m.update(None, None)
    assert m.merged([np.array([1.0]), np.array([4.0])]).get() == ('own', 4.0)


@pytest.mark.parametrize('length,batch', [(15, 4), (15, 7), (15, 1), (16, 3), (9, 4), (7, 4),
                                          (5, 2), (3, 2), (2, 2)])
def test_validation_shards_count_every_sample_once_in_equal_batch_counts(length, batch):
    """SplitSampler's padded repeat is cut from the last batch; a last batch of one
    sample joins the one before, on every part, so all parts run as many batches."""
    x = np.arange(length, dtype=np.float32).reshape(-1, 1)
    parts = 3
    seen, counts = [], []
    for k in range(parts):
        loader = DataLoader(ArrayDataset(x, x[:, 0]), batch_size=batch,
                            sampler=SplitSampler(length, num_parts=parts, part_index=k))
        batches = list(_distributed.validation_batches(loader, 0))
        counts.append(len(batches))
        for data, label in batches:
            assert data.shape[0] == label.shape[0] > 0
            seen.extend(data.asnumpy()[:, 0].tolist())
    assert sorted(seen) == list(range(length))
    if length >= parts:
        assert len(set(counts)) == 1, counts


def test_validation_batches_leave_other_loaders_alone():
    loader = DataLoader(ArrayDataset(np.zeros((5, 2)), np.zeros(5)), batch_size=2)
    assert len(list(_distributed.validation_batches(loader, 0))) == 3
    assert _distributed.unsharded(loader)
    assert _distributed.validation_batches([(1, 2)], 0) is not None
    even = DataLoader(ArrayDataset(np.zeros((6, 2)), np.zeros(6)), batch_size=2,
                      sampler=SplitSampler(6, num_parts=2, part_index=1))
    assert not _distributed.unsharded(even)
    assert [b[0].shape[0] for b in _distributed.validation_batches(even, 0)] == [2, 1]


def test_rank_states_of_a_checkpoint():
    meta = {'progress': {'epoch': 1}, 'random': {'a': 0}, 'loader': None,
            'handlers': {'H': {'w': 1}}, 'world_size': 2,
            'ranks': [{}, {'random': {'a': 1}, 'handlers/H': {'w': 2}}]}
    assert _distributed.select_rank_state(meta, 0, 2) is meta
    mine = _distributed.select_rank_state(meta, 1, 2)
    assert mine['random'] == {'a': 1} and mine['handlers'] == {'H': {'w': 2}}
    assert meta['handlers'] == {'H': {'w': 1}}            # not modified
    with pytest.raises(ValueError, match='written by a job of 2 rank'):
        _distributed.select_rank_state(meta, 0, 3)
    with pytest.raises(ValueError, match=r'mpiexec -n 1'):
        _distributed.select_rank_state({'progress': {}}, 1, 2)
    arrays = {'x': np.arange(3), 'y': np.arange(3), 'z': np.arange(3.0)}
    digest = _distributed._digest
    assert digest({'v': {'__array__': 'x'}}, arrays) == digest({'v': {'__array__': 'y'}}, arrays)
    assert digest({'v': {'__array__': 'x'}}, arrays) != digest({'v': {'__array__': 'z'}}, arrays)


def test_a_local_trainer_is_refused_in_a_job_of_several_ranks():
    from xpnet.estimator import _checks
    net = worker.build_net(0)
    trainer = xpnet.Trainer(net.collect_params(), 'sgd')
    assert _checks.check_trainer(trainer, net) is trainer
    with pytest.raises(ValueError, match="kvstore='dist_sync'"):
        _checks.check_trainer(trainer, net, ranks=2)


def test_one_process_is_the_writer_and_its_exceptions_are_everywhere():
    from estimator_helpers import Recorder, make_estimator, make_loader
    est = make_estimator()
    assert est.is_writer
    extra = worker.RankZeroOnly()
    extra.update(None, None)
    assert est.metric_value(extra) == est.metric_value(extra, local=True) == \
        ('rank_answer', 1.0)
    with pytest.raises(RuntimeError):
        est.fit(make_loader(), epochs=1, event_handlers=[Recorder(raise_at_batch=1)])
    assert est.exception_on_every_rank


def test_metric_reads_within_a_handler_call_share_one_gather(monkeypatch):
    """The reduction path in one process (a world of one rank gathers to itself): values
    as local, and one gather per handler call that reads, whatever it reads."""
    from estimator_helpers import make_estimator, make_loader
    from xpnet.handlers import LoggingHandler
    gathers = []
    real = _distributed.allgather_vectors

    def counting(vectors):
        gathers.append(len(vectors))
        return real(vectors)
    monkeypatch.setattr(_distributed, 'allgather_vectors', counting)
    xpnet.random.seed(0)
    est = make_estimator()
    warnings = []
    est._global_metrics = _distributed.GlobalMetrics(warnings.append)
    history = est.fit(make_loader(), make_loader(), epochs=2,
                      event_handlers=[LoggingHandler(log_interval=2)])
    # per epoch: 1 log line at batch 2, validation's log and its return value, the epoch's
    # log line, the history; then the train_end line: 5 x 2 + 1
    assert len(gathers) == 11 and set(gathers) == {4}, gathers     # all 4 metrics each time
    xpnet.random.seed(0)
    local = make_estimator()
    local.fit(make_loader(), make_loader(), epochs=2)
    for name, values in local.history.history.items():
        if name != 'epoch_time':
            assert history[name] == values, name
    extra = worker.RankZeroOnly()
    extra.update(None, None)
    assert est.metric_value(extra) == est.metric_value(extra) == ('rank_answer', 1.0)
    assert len(warnings) == 1 and 'rank_answer' in warnings[0]
