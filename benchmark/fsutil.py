"""Crash- and race-safe file primitives: atomic writes, checksummed cache files, file locks.

Everything the benchmark stores (result folders, caches, the MLflow store) goes through these so
that a kill -9 at any point leaves either the old state or the new one, a flipped bit in a cache
is detected instead of used, and two processes sharing a directory never compute or create the
same thing twice.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

from benchmark.errors import BenchmarkError

log = logging.getLogger(__name__)

CHECKSUM_SUFFIX = ".sha256"
_NAME_OK = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,127}$")


def sha256_file(path: str | os.PathLike) -> str:
    """Hex sha256 of a file's bytes, read in 1 MiB chunks: the one file hash every module uses."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def safe_name(name: str, what: str) -> str:
    """A suite/run/method name used as a path component: no separators, no '..', no hidden names."""
    from benchmark.errors import ConfigError

    if not isinstance(name, str) or not _NAME_OK.match(name) or ".." in name:
        raise ConfigError(f"{what} {name!r} is not a valid name (letters, digits, '_', '-', '.', '+'; "
                          "no path separators or '..')")
    return name


def atomic_write(path: Path, write: Callable[[IO[bytes]], object]) -> None:
    """Write ``path`` via a temporary sibling, fsync, rename: readers see the old or the new file."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda fh: fh.write(text.encode("utf-8")))


def write_checked(path: Path, write: Callable[[IO[bytes]], object]) -> None:
    """Write a cache file atomically, then its ``<name>.sha256`` (last, so a kill leaves no valid pair)."""
    path = Path(path)
    atomic_write(path, write)
    atomic_write_text(path.with_name(path.name + CHECKSUM_SUFFIX), sha256_file(path) + "\n")


def cache_entry_refusal(path: Path, cache_dir: Path) -> str | None:
    """None when ``path`` may be read as an entry of ``cache_dir``, else why not.

    A cache is ours to trust only as far as its files are: a symbolic link planted in it, or a
    file whose real path lies outside the cache directory (through a linked sub-folder), would
    make the benchmark open, hash and use someone else's file. Hard links cannot be told apart
    and are accepted (the twin's image cache uses them).
    """
    path = Path(path)
    if path.is_symlink():
        return "it is a symbolic link"
    real = Path(os.path.realpath(path))
    if not real.is_relative_to(os.path.realpath(cache_dir)):
        return f"its real path {real} is outside the cache directory"
    return None


def verify_checked(path: Path, cache_dir: Path | None = None) -> str | None:
    """None when ``path`` matches its recorded checksum, else why it must not be used.

    ``cache_dir`` (default: the file's folder): the file and its checksum must be plain entries of
    it (:func:`cache_entry_refusal`).
    """
    path = Path(path)
    side = path.with_name(path.name + CHECKSUM_SUFFIX)
    for entry in (path, side):
        refusal = cache_entry_refusal(entry, cache_dir if cache_dir is not None else path.parent)
        if refusal is not None:
            return f"{entry.name}: {refusal}"
    try:
        expected = side.read_text().strip()
    except FileNotFoundError:
        return "no checksum recorded (written by an older version or interrupted)"
    except (OSError, UnicodeDecodeError) as exc:
        return f"checksum file unreadable ({exc})"
    try:
        actual = sha256_file(path)
    except OSError as exc:
        return f"unreadable ({exc.strerror or exc})"
    if actual != expected:
        return "content does not match its checksum (corrupt or altered)"
    return None


def remove_checked(path: Path) -> None:
    for p in (Path(path), Path(path).with_name(Path(path).name + CHECKSUM_SUFFIX)):
        with contextlib.suppress(OSError):
            p.unlink()


#: Where caches go when a data directory cannot hold them (else ``$XDG_CACHE_HOME/uie-bench``, ``~/.cache/uie-bench``).
CACHE_DIR_ENV = "UIE_CACHE_DIR"
_CACHE_ROOTS: dict[str, Path] = {}


def _write_problem(folder: Path) -> str | None:
    """None when files can be created in ``folder`` (made if missing), else why not (works for root too)."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-probe-"):
            pass
    except OSError as exc:
        return exc.strerror or str(exc)
    return None


def unwritable_reason(path: Path) -> str | None:
    """None when ``path`` is (or can be created as) a directory this process may write, else why not.

    Checked without writing anything: the path, or its nearest existing ancestor when it does not
    exist yet, must be a directory that ``os.access`` says is writable (which also reports a
    read-only filesystem to root).
    """
    probe = Path(path).absolute()
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent
    if not probe.is_dir():
        return f"{probe} is not a directory"
    if not os.access(probe, os.W_OK | os.X_OK):
        return f"{probe} is not writable"
    return None


def user_cache_dir() -> Path:
    """The writable cache folder of last resort: ``$UIE_CACHE_DIR``, else the XDG user cache."""
    if os.environ.get(CACHE_DIR_ENV):
        return Path(os.environ[CACHE_DIR_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "uie-bench"


def cache_root(data_dir: Path) -> Path:
    """``<data_dir>/.cache`` when it can be written, else a folder of its own under :func:`user_cache_dir`.

    A read-only data directory must not lose a modality (images fetched into its cache) or be
    silently run uncached: the substitute is named in one warning (once per directory), and when
    neither can be written this is a one-line error (exit 2) before anything is computed.
    """
    preferred = Path(data_dir) / ".cache"
    key = os.path.realpath(preferred)
    if key in _CACHE_ROOTS:
        return _CACHE_ROOTS[key]
    problem = _write_problem(preferred)
    if problem is None:
        return preferred
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(key).parent.name)[:40] or "data"
    fallback = user_cache_dir() / f"{slug}-{hashlib.sha256(key.encode()).hexdigest()[:12]}"
    second = _write_problem(fallback)
    if second is not None:
        raise BenchmarkError(f"{preferred}: cannot hold caches ({problem}), nor can {fallback} ({second}); "
                             f"make one of them writable or point {CACHE_DIR_ENV} at a writable folder")
    log.warning("cannot write caches under %s (%s); caching in %s instead", preferred, problem, fallback)
    _CACHE_ROOTS[key] = fallback
    return fallback


@contextlib.contextmanager
def file_lock(path: Path, blocking: bool = True) -> Iterator[bool]:
    """An exclusive ``flock`` on ``path`` (created if needed); yields False when non-blocking and held.

    The kernel releases the lock when the process dies, so a killed run never blocks the next one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except OSError as exc:
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN) and not blocking:
                yield False
                return
            raise
        try:
            yield True
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_dead_tmp_dirs(parent: Path, prefix: str = ".tmp-") -> list[Path]:
    """Delete ``<prefix>...-p<pid>-*`` folders whose writer process is gone; return what was removed."""
    removed = []
    if not Path(parent).is_dir():
        return removed
    for path in Path(parent).iterdir():
        if not path.name.startswith(prefix) or not path.is_dir():
            continue
        m = re.search(r"-p(\d+)-", path.name)
        if m is None or pid_alive(int(m.group(1))):
            continue  # a live writer's, or one without a pid (cleaned under its run lock instead)
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path)
    if removed:
        log.info("removed %d unfinished temporary folder(s) of dead processes under %s", len(removed), parent)
    return removed


def remove_stale_tmp(final: Path) -> None:
    """Delete the unfinished temporary folders of ``final`` (call with its key's lock held: their writer is dead)."""
    for stale in Path(final).parent.glob(f".tmp-{Path(final).name}-*"):
        shutil.rmtree(stale, ignore_errors=True)


#: A result folder's checksums of its result files (``<sha256>  <name>`` per line).
CHECKSUMS_FILE = "SHA256SUMS"
#: Records rewritten after the folder is in place (their tracking outcome): not checksummed.
UNSUMMED = ("result.json", "record.json")


def write_checksums(folder: Path) -> None:
    """``SHA256SUMS`` of every file in ``folder`` except the records (rewritten by tracking)."""
    names = sorted(p.name for p in Path(folder).iterdir()
                   if p.is_file() and p.name not in (*UNSUMMED, CHECKSUMS_FILE) and not p.name.startswith("."))
    Path(folder, CHECKSUMS_FILE).write_text("".join(f"{sha256_file(Path(folder) / n)}  {n}\n" for n in names))


def verify_folder(folder: Path) -> str | None:
    """None when every file listed in ``folder``'s ``SHA256SUMS`` is present and matches, else why not
    (naming the file). Folders written before checksums were kept have none: they pass."""
    sums = Path(folder) / CHECKSUMS_FILE
    if not sums.is_file():
        return None
    for line in sums.read_text().splitlines():
        digest, _, name = line.partition("  ")
        path = Path(folder) / name
        if not path.is_file():
            return f"{path}: missing (listed in {sums})"
        if sha256_file(path) != digest:
            return f"{path}: does not match its checksum in {sums} (corrupt or edited)"
    return None


def verify_result_file(path: Path) -> None:
    """Raise a one-line BenchmarkError when ``path`` does not match its folder's ``SHA256SUMS``.

    Folders written before checksums were kept have none: they read as before.
    """
    path = Path(path)
    sums = path.parent / CHECKSUMS_FILE
    if not sums.is_file():
        return
    want = {name: digest for digest, _, name in (line.partition("  ") for line in sums.read_text().splitlines())}
    if path.name in want and (not path.is_file() or sha256_file(path) != want[path.name]):
        raise BenchmarkError(f"{path}: does not match its checksum in {sums} (corrupt or edited); "
                             "delete the folder and rerun to recompute it")


def load_result_array(path: Path) -> Any:
    """``np.load`` of a result file after :func:`verify_result_file` (no pickles)."""
    import numpy as np  # fsutil stays importable without numpy for the CLI's light commands

    verify_result_file(path)
    return np.load(path, allow_pickle=False)


def atomic_write_dir(final: Path, write: Callable[[Path], None], checksums: bool = False) -> None:
    """Write into a temporary sibling, then rename onto ``final`` (never a partial folder).

    The temporary name carries the writer's pid (``.tmp-<key>-p<pid>-*``) so folders of dead
    processes can be told apart and removed; readers skip every dot-folder. ``checksums``: write
    ``SHA256SUMS`` of the result files before the rename (readers verify with :func:`verify_result_file`).
    """
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{final.name}-p{os.getpid()}-", dir=final.parent))
    try:
        write(tmp)
        if checksums:
            write_checksums(tmp)
        for path in tmp.iterdir():
            with open(path, "rb") as fh:
                os.fsync(fh.fileno())
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
