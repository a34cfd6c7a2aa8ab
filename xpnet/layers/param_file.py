"""Parameter files as ``Block.load_parameters`` reads them: checked against the block first.

A parameter file (xpnet's ``.npz`` or Gluon 1.x's binary ``.params``) is untrusted. Its
names, shapes and dtypes are read from the headers alone and compared with the block's
parameters; only then are the arrays the block needs read, each exactly as large as its
header (already checked against the parameter's shape) says. A crafted file therefore
fails with :class:`ParameterFileError` before anything large is allocated.
"""
import os

from ..serialization import FileFormatError, load_npz
from .mxnet_params import is_mxnet_params, read_mxnet_params

__all__ = ['ParameterFileError', 'check_parameter_shapes', 'read_parameter_file']

_NUMERIC = 'biuf'
_PREFIXES = ('arg:', 'aux:')        # Gluon 1.x export / Module checkpoint names


class ParameterFileError(FileFormatError):
    """A parameter file is unreadable, or does not match the block's parameters."""


def check_parameter_shapes(source, shapes, params, allow_missing, ignore_extra, owner):
    """Compare the arrays a file holds with the block's parameters.

    Args:
        source: the file name (or a description), for messages.
        shapes: ``{name: shape}`` of the arrays in the file.
        params: ``{name: Parameter}`` of the block.
        allow_missing, ignore_extra: as in ``load_parameters``.
        owner: the block's class name, for messages.

    Returns:
        The names to load: those in both the file and the block.

    Raises:
        ParameterFileError: naming every missing or extra parameter, or a shape mismatch.
    """
    # a shared (tied) Parameter is missing only if none of its names is in the file
    present = {id(p) for k, p in params.items() if k in shapes}
    missing = [k for k, p in params.items() if id(p) not in present]
    if missing and not allow_missing:
        raise ParameterFileError(
            f'parameter file {source!r} lacks {len(missing)} parameter(s) of this {owner}: '
            f'{", ".join(missing)} (use allow_missing=True to skip)')
    extra = [k for k in shapes if k not in params]
    if extra and not ignore_extra:
        raise ParameterFileError(
            f'parameter file {source!r} has {len(extra)} parameter(s) this {owner} does '
            f'not: {", ".join(extra)} (use ignore_extra=True to skip them)')
    wanted = [k for k in params if k in shapes]
    for name in wanted:
        want, got = params[name].shape, tuple(shapes[name])
        if want is not None and (len(want) != len(got) or any(
                s not in (0, None) and s != v for s, v in zip(want, got))):
            raise ParameterFileError(f'parameter {name!r} has shape {want} in this {owner} '
                                     f'but {got} in {source!r}')
    return wanted


def read_parameter_file(filename, params, allow_missing=False, ignore_extra=False,
                        owner='Block', rename=None):
    """``{parameter name: host array}`` of the parameters of ``params`` that ``filename``
    holds, after checking every name, shape and dtype in the file against them.

    ``rename(names)``, if given, maps the file's names (``arg:``/``aux:`` prefixes already
    stripped) to parameter names (legacy Gluon names, say); names it leaves out stay.

    Raises:
        FileNotFoundError: no such file.
        ParameterFileError: the file is unreadable or does not match ``params``.
    """
    filename = os.fspath(filename)
    if not os.path.exists(filename):
        raise FileNotFoundError(f'parameter file {filename!r} does not exist')
    renamed = {}

    def select(headers):
        by_name = {}
        for key, header in headers.items():
            name = key[4:] if key.startswith(_PREFIXES) else key
            if name in by_name:
                raise ParameterFileError(f'parameter file {filename!r} holds {name!r} twice')
            if header.dtype.kind not in _NUMERIC:
                raise ParameterFileError(f'parameter file {filename!r}: {key!r} has dtype '
                                         f'{header.dtype}, not a number type')
            by_name[name] = header
        if rename is not None:
            mapping = rename(list(by_name))
            by_name = {mapping.get(k, k): h for k, h in by_name.items()}
            if len(by_name) != len(headers):
                raise ParameterFileError(f'parameter file {filename!r} holds a parameter '
                                         'under two names')
        wanted = check_parameter_shapes(filename, {k: h.shape for k, h in by_name.items()},
                                        params, allow_missing, ignore_extra, owner)
        renamed.update({by_name[k].name: k for k in wanted})
        return [by_name[k].name for k in wanted]

    if is_mxnet_params(filename):           # Gluon 1.x save_parameters
        arrays = read_mxnet_params(filename, select, ParameterFileError)
    else:
        arrays = load_npz(filename, 'parameter', ParameterFileError, select)
    return {renamed[k]: v for k, v in arrays.items()}
