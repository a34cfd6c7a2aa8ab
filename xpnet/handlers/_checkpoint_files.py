"""The files of CheckpointHandler's checkpoints: names, verified reading, writing that
leaves either a complete checkpoint or nothing, and the handler's own leftovers.

A checkpoint ``{prefix}-epoch{E}batch{B}`` (or ``{prefix}-best``) is three files: ``.params``
(the network), ``.states`` (the trainer) and ``.progress``, written last, which marks it
complete and records the size and SHA-256 of the other two.
"""
import errno
import hashlib
import json
import os
import re
import tempfile
import time

import numpy as np

from ..serialization import check_schema, load_record, save_npz

__all__ = ['CheckpointError', 'CheckpointFiles']

_FORMAT = 'xpnet-checkpoint'
_VERSION = 1
_META = '__meta__'
_FILE_SCHEMA = {'name': str, 'size': int, 'sha256': str}
_RECORD_SCHEMA = {'saved_at': (int, float), 'checkpoint': str, 'params': _FILE_SCHEMA,
                  'states': _FILE_SCHEMA, 'training': dict}
EXTS = ('params', 'states', 'progress')


class CheckpointError(ValueError):
    """A checkpoint is incomplete, corrupt or does not belong to its files."""


def _sha256(path):
    h = hashlib.sha256()
    with open(path, 'rb') as f:
        for chunk in iter(lambda: f.read(1 << 20), b''):
            h.update(chunk)
    return h.hexdigest()


def _file_record(path):
    return {'name': os.path.basename(path), 'size': os.path.getsize(path),
            'sha256': _sha256(path)}


def _remove(path):
    try:
        os.remove(path)
    except FileNotFoundError:
        pass


def _reworded(err, message):
    """``err``'s kind of OSError (same errno) with ``message``."""
    if err.errno is None:
        return type(err)(message)
    return type(err)(err.errno, message)


def stem_position(stem):
    """``(epoch, batches)`` of an epoch/batch stem."""
    epoch, batches = re.search(r'epoch(\d+)batch(\d+)$', stem).groups()
    return int(epoch), int(batches)


class CheckpointFiles:
    """Reads and writes the checkpoints of one ``model_dir`` and ``prefix``."""

    def __init__(self, model_dir, prefix):
        self.model_dir = model_dir
        self.prefix = prefix
        p = re.escape(prefix)
        self._stem_pattern = re.compile(p + r'-epoch(\d+)batch(\d+)\.(params|states|progress)$')
        # the temporary names of serialization.save_npz ('.<file>.<random>.tmp') for this
        # handler's files, and of its write probe: a killed save leaves these behind
        self._leftover_pattern = re.compile(
            r'\.' + p + r'-(?:(?:epoch\d+batch\d+|best)\.(?:params|states|progress)|probe)'
            r'\.[A-Za-z0-9_]+\.tmp$')

    def path(self, stem, ext):
        return os.path.join(self.model_dir, f'{stem}.{ext}')

    def exists(self, stem):
        return any(os.path.exists(self.path(stem, ext)) for ext in EXTS)

    # ---- the directory ----------------------------------------------------------------------
    def prepare(self):
        """Create ``model_dir``, check that files can be written there and remove the
        leftovers of saves that were killed mid-write; returns the names removed.

        Raises:
            OSError: naming the directory, when it cannot be created or written.
        """
        try:
            os.makedirs(self.model_dir, exist_ok=True)
            fd, probe = tempfile.mkstemp(prefix=f'.{self.prefix}-probe.', suffix='.tmp',
                                         dir=self.model_dir)
            os.close(fd)
            os.remove(probe)
        except OSError as err:
            raise _reworded(err, f'CheckpointHandler: cannot write checkpoints to '
                            f'{self.model_dir!r}: {err.strerror or err}; choose a writable '
                            'model_dir or fix its permissions') from err
        removed = []
        for name in os.listdir(self.model_dir):
            if self._leftover_pattern.match(name):
                _remove(os.path.join(self.model_dir, name))
                removed.append(name)
        return removed

    def stems(self):
        """The epoch/batch stems with at least one file in ``model_dir``."""
        stems = set()
        if not os.path.isdir(self.model_dir):
            return stems
        for name in os.listdir(self.model_dir):
            m = self._stem_pattern.match(name)
            if m:
                stems.add(name[:m.start(3) - 1])
        return stems

    # ---- reading ---------------------------------------------------------------------------
    def read_marker(self, stem):
        marker = self.path(stem, 'progress')
        if not os.path.exists(marker):
            raise CheckpointError(f'{marker} is missing: the checkpoint was not completed')
        try:
            meta, arrays = load_record(marker, 'checkpoint record', meta_key=_META)
        except Exception as err:
            raise CheckpointError(f'{marker} is truncated or corrupt ({err})') from err
        if not isinstance(meta, dict) or meta.get('format') != _FORMAT:
            raise CheckpointError(f'{marker} is not an xpnet checkpoint record')
        check_schema(meta, _RECORD_SCHEMA, marker, CheckpointError)
        return meta, arrays

    def read(self, stem):
        """``(meta, arrays)`` of ``stem`` after checking it is complete and that its
        ``.params``/``.states`` are the files it was written with (``CheckpointError``
        naming the file otherwise)."""
        meta, arrays = self.read_marker(stem)
        marker = self.path(stem, 'progress')
        for ext in ('params', 'states'):
            path, record = self.path(stem, ext), meta.get(ext) or {}
            if not os.path.exists(path):
                raise CheckpointError(f'{path} is missing')
            if os.path.getsize(path) != record.get('size') or \
                    _sha256(path) != record.get('sha256'):
                raise CheckpointError(f'{path} is truncated or corrupt (its content does not '
                                      f'match the digest recorded in {os.path.basename(marker)})')
        return meta, arrays

    def age(self, stem, meta=None):
        """Sort key, oldest first: when the checkpoint was written (its record, else its
        newest file's mtime), then how far training had got."""
        epoch, batches = stem_position(stem)
        try:
            written = float((meta or self.read_marker(stem)[0])['saved_at'])
        except (CheckpointError, KeyError, TypeError, ValueError):
            paths = [self.path(stem, ext) for ext in EXTS]
            written = max((os.path.getmtime(p) for p in paths if os.path.exists(p)),
                          default=0.0)
        return written, batches, epoch

    # ---- writing ---------------------------------------------------------------------------
    def write(self, stem, estimator, training):
        """Write checkpoint ``stem`` of ``estimator`` with ``training``, the
        ``(meta, arrays)`` of ``Estimator.training_state``, replacing any files of that
        name.

        On any failure the files of ``stem`` are removed before the error propagates: a
        checkpoint is complete or absent. An ``OSError`` (a full disk: ``ENOSPC``) is
        re-raised with a message naming the checkpoint and what to do.
        """
        paths = [self.path(stem, ext) for ext in EXTS]
        try:
            self.remove(stem)
            estimator.net.save_parameters(paths[0])
            estimator.trainer.save_states(paths[1])
            training, arrays = training
            meta = {'format': _FORMAT, 'version': _VERSION, 'saved_at': time.time(),
                    'checkpoint': stem, 'params': _file_record(paths[0]),
                    'states': _file_record(paths[1]), 'training': training}
            arrays = dict(arrays)
            arrays[_META] = np.frombuffer(json.dumps(meta).encode('utf-8'), dtype=np.uint8)
            save_npz(paths[2], arrays)
        except BaseException as err:
            self.remove(stem)
            if isinstance(err, OSError) and not isinstance(err, FileNotFoundError):
                what = 'the disk is full' if err.errno == errno.ENOSPC else \
                    (err.strerror or str(err))
                raise _reworded(err, f'CheckpointHandler: could not write checkpoint '
                                f'{stem} in {self.model_dir!r} ({what}); its partial files '
                                'were removed. Free space (or fix the directory) and run '
                                'again: resume_from_checkpoint=True continues from the '
                                'newest complete checkpoint') from err
            raise

    def remove(self, stem):
        """Delete the files of ``stem``, the marker first (a half-deleted checkpoint is then
        just an incomplete one)."""
        for ext in ('progress', 'params', 'states'):
            _remove(self.path(stem, ext))

    def move_aside(self, stem):
        """Rename the files of ``stem`` to ``<file>.unreadable`` (numbered if taken) instead
        of overwriting files that are not a verified checkpoint of this handler; returns
        the new names."""
        moved = []
        for ext in EXTS:
            path = self.path(stem, ext)
            if not os.path.exists(path):
                continue
            target, n = path + '.unreadable', 1
            while os.path.exists(target):
                target, n = f'{path}.unreadable{n}', n + 1
            os.replace(path, target)
            moved.append(os.path.basename(target))
        return moved
