"""History.plot: the training curves with matplotlib, or a clear error without it."""
import sys

import pytest

from xpnet.estimator import History

from estimator_helpers import make_estimator, make_loader

pytest.importorskip('matplotlib')


def _history():
    est = make_estimator()
    return est.fit(make_loader(), val_data=make_loader(), epochs=3)


def test_plot_draws_a_panel_per_metric_and_saves_it(tmp_path):
    history = _history()
    path = tmp_path / 'curves.png'
    fig = history.plot(str(path))
    assert [ax.get_title() for ax in fig.axes] == ['accuracy', 'softmaxcrossentropyloss',
                                                   'learning_rate']
    lines = fig.axes[0].get_lines()
    assert [l.get_label() for l in lines] == ['training', 'validation']
    assert list(lines[0].get_xdata()) == [0, 1, 2]
    assert list(lines[1].get_ydata()) == history['validation accuracy']
    assert path.read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'


def test_plot_selected_metrics_and_errors(tmp_path):
    history = _history()
    fig = history.plot(metrics=['accuracy', 'training softmaxcrossentropyloss'])
    assert [ax.get_title() for ax in fig.axes] == ['accuracy', 'training softmaxcrossentropyloss']
    with pytest.raises(ValueError, match="History.plot: no metric 'f1'"):
        history.plot(metrics=['f1'])
    with pytest.raises(ValueError, match='no epoch has been recorded'):
        History().plot()


def test_plot_without_matplotlib_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, 'matplotlib.figure', None)
    with pytest.raises(ImportError, match=r"pip install 'xpnet\[plot\]'"):
        _history().plot()
