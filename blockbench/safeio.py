"""Reading and writing files that may come from a stranger: the one place blockbench opens a file it did not make.

Writes never follow a symbolic link at the last path component and land only on regular files: a run directory,
a results folder or a cache received from someone else may hold a link named like the file blockbench is about to
write (`.lock`, a record, a page), and following it would truncate whatever the link points at. A write either
goes through `open_nofollow` (a file kept open, e.g. the run lock) or `atomic_write_*` (a temp file in the same
directory, fsynced, renamed over the name: a reader sees the old file or the new one, never half of one, and a
failed write leaves nothing behind).

Reads go through `read_guarded` and the loaders built on it: the file must be a regular file (a FIFO would block
forever, a device never end), no larger than a cap (a 1 GiB file is refused, not read whole), and for JSON no more
deeply nested than a cap (refused by a scan, not by a RecursionError half-way through the parser). Every refusal is
an `UnsafeFileError`: one line, naming the path and what is wrong, which the CLI turns into exit code 2.
"""

from __future__ import annotations

import errno
import json
import math
import os
import re
import stat
import tempfile
import tomllib
from pathlib import Path
from typing import Any

from blockbench.errors import BlockbenchError

# Caps for the files blockbench reads that are not records (records.py keeps its own, larger one).
MAX_JSON_BYTES = 16 * 2**20
MAX_TOML_BYTES = 2 * 2**20
MAX_DEPTH = 64
INT_LIMIT = 2**63

# O_NOFOLLOW and O_CLOEXEC are POSIX; where a platform lacks one, the lstat check below still refuses a link.
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_NONBLOCK = getattr(os, "O_NONBLOCK", 0)


class UnsafeFileError(BlockbenchError):
    """A file refused on the way in or out: a link, not a regular file, too large, too deep, malformed.
    str() is one line that names the path (and the field, where one is at fault)."""


def _why(exc: OSError) -> str:
    return exc.strerror or type(exc).__name__


def _one_line(text: str, limit: int = 200) -> str:
    """A message fragment that stays on one line, whatever a file or its name held."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def check_writable_target(path: str | os.PathLike, what: str = "file") -> Path:
    """`path` is absent or a regular file (lstat: a link is never followed); anything else is refused."""
    path = Path(path)
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return path
    except OSError as exc:
        raise UnsafeFileError(f"{path}: cannot write the {what} there ({_why(exc)})") from None
    if stat.S_ISLNK(info.st_mode):
        raise UnsafeFileError(f"{path}: is a symbolic link; blockbench never writes its {what} through a link")
    if not stat.S_ISREG(info.st_mode):
        raise UnsafeFileError(f"{path}: not a regular file; blockbench writes its {what} only to regular files")
    return path


def open_nofollow(path: str | os.PathLike, flags: int = os.O_RDWR | os.O_CREAT, mode: int = 0o644,
                  what: str = "file") -> int:
    """A file descriptor for `path`, opened without following a link at its last component, and refused unless it
    is a regular file. O_TRUNC in `flags` truncates only once the file is known to be regular (a FIFO or device is
    never truncated, and opening one does not block: O_NONBLOCK until it is checked)."""
    path = Path(path)
    truncate = bool(flags & os.O_TRUNC)
    try:
        fd = os.open(path, (flags & ~os.O_TRUNC) | _NOFOLLOW | _CLOEXEC | _NONBLOCK, mode)
    except OSError as exc:
        if exc.errno == errno.ELOOP or (os.path.islink(path)):
            raise UnsafeFileError(f"{path}: is a symbolic link; blockbench never writes its {what} through a "
                                  "link") from None
        if exc.errno == errno.ENXIO:  # a FIFO with no reader, opened for writing without blocking
            raise UnsafeFileError(f"{path}: not a regular file; blockbench writes its {what} only to regular "
                                  "files") from None
        raise
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise UnsafeFileError(f"{path}: not a regular file; blockbench writes its {what} only to regular files")
        if _NONBLOCK:
            os.set_blocking(fd, True)
        if truncate:
            os.ftruncate(fd, 0)
    except BaseException:
        os.close(fd)
        raise
    return fd


def file_size_limit() -> int | None:
    """The process's file-size limit in bytes (`ulimit -f`: RLIMIT_FSIZE, soft), None when unlimited."""
    try:
        import resource  # deferred: POSIX only; elsewhere there is no limit to read
    except ImportError:  # not POSIX
        return None
    soft, _ = resource.getrlimit(resource.RLIMIT_FSIZE)
    return None if soft == resource.RLIM_INFINITY else soft


def write_error_text(exc: BaseException) -> str:
    """Why a write failed, in a few words: the OS's reason, or (a short write reported without one, as numpy's
    is) the library's; and the file-size limit when one is set, since it is the likely cause."""
    why = _one_line(getattr(exc, "strerror", None) or str(exc) or type(exc).__name__)
    limit = file_size_limit()
    if limit is not None and (getattr(exc, "errno", None) in (errno.EFBIG, None)):
        why += f"; the file-size limit (ulimit -f) is {limit // 1024} KiB"
    return why


def atomic_write_bytes(path: str | os.PathLike, data: bytes, what: str = "file", *, mode: int = 0o644) -> Path:
    """Write `data` to `path` atomically: a temp file in the same directory, fsynced, renamed over `path`. `path`
    must be absent or a regular file (a link there is refused, not followed nor replaced). Any OSError (ENOSPC,
    EFBIG under a file-size limit) propagates after the temp file is removed: nothing partial is ever left."""
    path = check_writable_target(path, what)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        try:
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fchmod(fd, mode & ~_umask())
            os.fsync(fd)
        finally:
            os.close(fd)
        # Checked again right before the rename: a link that appeared meanwhile is refused, not replaced.
        check_writable_target(path, what)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str, what: str = "file", *, encoding: str = "utf-8") -> Path:
    return atomic_write_bytes(path, text.encode(encoding), what)


def _umask() -> int:
    # os.umask can only be read by setting it; done once, at import, before any thread can race it.
    return _UMASK


_UMASK = os.umask(0)
os.umask(_UMASK)


# ---------------------------------------------------------------------------------------------------------------
# reading

def read_guarded(path: str | os.PathLike, max_bytes: int, what: str = "file") -> bytes:
    """The bytes of `path`, which must be a regular file of at most `max_bytes`. Opened non-blocking (a FIFO does
    not hang the reader) and checked with fstat on the open descriptor (no race between the check and the read);
    reads at most max_bytes + 1, so a file that grows meanwhile is refused too, never read whole."""
    path = Path(path)
    try:
        fd = os.open(path, os.O_RDONLY | _CLOEXEC | _NONBLOCK)
    except OSError as exc:
        raise UnsafeFileError(f"{path}: cannot read the {what} ({_why(exc)})") from None
    try:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise UnsafeFileError(f"{path}: is a directory, not a {what}")
        if not stat.S_ISREG(info.st_mode):
            raise UnsafeFileError(f"{path}: not a regular file; not a {what}")
        if info.st_size > max_bytes:
            raise UnsafeFileError(f"{path}: {info.st_size:,} bytes, more than the {max_bytes:,} a {what} may have")
        if _NONBLOCK:
            os.set_blocking(fd, True)
        chunks, total = [], 0
        while total <= max_bytes:
            chunk = os.read(fd, min(1 << 20, max_bytes + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
    except OSError as exc:
        raise UnsafeFileError(f"{path}: cannot read the {what} ({_why(exc)})") from None
    finally:
        os.close(fd)
    if total > max_bytes:
        raise UnsafeFileError(f"{path}: more than the {max_bytes:,} bytes a {what} may have")
    return b"".join(chunks)


def read_text_guarded(path: str | os.PathLike, max_bytes: int, what: str = "file") -> str:
    data = read_guarded(path, max_bytes, what)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UnsafeFileError(f"{path}: not UTF-8 text (byte {exc.start}); not a {what}") from None


# JSON strings (with their escapes), then every character that is not a bracket: what is left is the nesting.
_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")


def json_depth(text: str) -> int:
    """The deepest nesting of arrays and objects in JSON text (brackets inside strings do not count). A scan,
    not a recursive descent: any depth is measured without a RecursionError."""
    depth = deepest = 0
    for char in _NOT_BRACKET.sub("", _JSON_STRING.sub('""', text)):
        if char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        else:
            depth -= 1
    return deepest


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e999 parses as inf: as good as an Infinity literal
        raise ValueError(f"number {text[:20]} is out of range")
    return value


def _bounded_int(text: str) -> int:
    if len(text) > 20:  # no int() of a long digit string: Python's own limit is 4300 digits, slow before that
        raise ValueError(f"integer {text[:20]}... is too large")
    value = int(text)
    if abs(value) >= INT_LIMIT:
        raise ValueError(f"integer {text} is too large")
    return value


def parse_json_strict(text: str, path: str | os.PathLike, what: str = "file", max_depth: int = MAX_DEPTH) -> Any:
    """JSON text -> value, refusing NaN/Infinity literals, out-of-range numbers and nesting past `max_depth`."""
    if json_depth(text) > max_depth:
        raise UnsafeFileError(f"{path}: JSON nested too deeply (more than {max_depth} levels); not a {what}")
    try:
        return json.loads(text, parse_constant=_reject_constant, parse_float=_finite_float, parse_int=_bounded_int)
    except json.JSONDecodeError as exc:
        raise UnsafeFileError(f"{path}: not valid JSON (line {exc.lineno}: {exc.msg})") from None
    except RecursionError:  # the scan above makes this unreachable below Python's limit; kept as a backstop
        raise UnsafeFileError(f"{path}: JSON nested too deeply; not a {what}") from None
    except ValueError as exc:  # NaN/Infinity literals, integers too large
        raise UnsafeFileError(f"{path}: not valid JSON ({_one_line(str(exc))})") from None


def load_json_guarded(path: str | os.PathLike, max_bytes: int = MAX_JSON_BYTES, max_depth: int = MAX_DEPTH,
                      what: str = "JSON file") -> Any:
    """A JSON file through every guard: regular file, size cap, UTF-8, depth cap, strict numbers."""
    return parse_json_strict(read_text_guarded(path, max_bytes, what), path, what, max_depth)


def _toml_depth(value: Any, limit: int, depth: int = 0) -> int:
    """Nesting depth of parsed TOML, stopping once past `limit` (tomllib itself recurses, so its input was
    already bounded by the size cap; this bounds what the callers walk)."""
    if depth > limit:
        return depth
    if isinstance(value, dict):
        return max((_toml_depth(v, limit, depth + 1) for v in value.values()), default=depth + 1)
    if isinstance(value, list):
        return max((_toml_depth(v, limit, depth + 1) for v in value), default=depth + 1)
    return depth


def load_toml_guarded(path: str | os.PathLike, max_bytes: int = MAX_TOML_BYTES, max_depth: int = MAX_DEPTH,
                      what: str = "TOML file") -> dict[str, Any]:
    """A TOML file through every guard: regular file, size cap, UTF-8, valid TOML, depth cap."""
    text = read_text_guarded(path, max_bytes, what)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise UnsafeFileError(f"{path}: not valid TOML ({_one_line(str(exc))})") from None
    except RecursionError:
        raise UnsafeFileError(f"{path}: TOML nested too deeply; not a {what}") from None
    if _toml_depth(data, max_depth) > max_depth:
        raise UnsafeFileError(f"{path}: TOML nested too deeply (more than {max_depth} levels); not a {what}")
    return data


def expect_type(value: Any, kind: type | tuple[type, ...], field: str, path: str | os.PathLike) -> Any:
    """`value` if it is of `kind`, else a one-line refusal naming the file and the field (bool is not an int)."""
    kinds = kind if isinstance(kind, tuple) else (kind,)
    ok = isinstance(value, kinds) and not (isinstance(value, bool) and bool not in kinds)
    if not ok:
        names = " or ".join({dict: "a table", list: "a list", str: "a string", int: "an integer",
                             float: "a number", bool: "true or false"}.get(k, k.__name__) for k in kinds)
        raise UnsafeFileError(f"{path}: {field} must be {names}, not {type(value).__name__}")
    return value
