"""The results store: ``results.json`` in an output folder, safe to share between runs.

The design, in five rules:

1. **One record per experiment and mode.** ``results.json`` maps every experiment to a
   :class:`Slot` per mode (``"full"``, ``"quick"``): the last good
   :class:`~jaxopt_lectures.experiments.record.RunRecord` (``result``) and, when a later run of
   the same experiment and mode failed, that failure (``failure``) *next to* it. A failure never
   replaces a good result, and a quick run never replaces a full one. A later good run clears the
   failure.
2. **Merged, never overwritten.** A run changes the file only through :meth:`ResultsStore.commit`,
   which takes an advisory lock (``fcntl.flock`` on ``.results.lock`` in the folder), reads the
   file as it is *now*, puts the one record in its slot, writes the whole file atomically (a
   temporary file, then ``os.replace``) and renders the reports from what it wrote, all before it
   releases the lock. Two runs into one folder, in any interleaving, end with every experiment of
   both, and a reader never sees half a file.
3. **Figures travel with their record.** A run draws its figures into a staging folder; the commit
   moves them into place (``quick/`` for quick runs) in the same locked step, so the figures on
   disk always belong to the records shown. A failed run's figures are discarded.
4. **Nothing unreadable is dropped, nothing unreadable is written.** A ``results.json`` that is
   not a record file as this module writes it (not UTF-8, not strict JSON: ``NaN``,
   ``Infinity`` or 1e400, which Python reads but will not write back; a wrong type anywhere; a
   record in the wrong slot) is renamed to ``results.json.unreadable-<time>``, a one-line
   warning names the backup, and the run goes on with a new file. What the store writes is
   always strict JSON (:meth:`RunRecord.to_json
   <jaxopt_lectures.experiments.record.RunRecord.to_json>`).
5. **No litter.** Temporary files and staging folders carry their writer's process id
   (``.<name>.<pid>.tmp-*``); every run removes those whose process no longer exists (a run
   killed with SIGKILL leaves them behind).

Imports only the standard library (and NumPy through :mod:`~.record`).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from jaxopt_lectures.experiments.record import MODES, Json, Mode, RunKey, RunRecord

try:
    import fcntl
except ImportError:  # pragma: no cover - not on POSIX: no lock, still atomic writes
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "RESULTS",
    "SCHEMA",
    "Results",
    "ResultsStore",
    "Slot",
    "atomic_file",
    "figure_folder",
    "write_atomic",
]

RESULTS = "results.json"
SCHEMA = 2
LOCK = ".results.lock"
_TEMP = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)\.tmp-[^/]*$")


@dataclass
class Slot:
    """The records of one experiment in one mode: the last good one and a failure after it."""

    result: RunRecord | None = None
    failure: RunRecord | None = None

    def put(self, record: RunRecord) -> None:
        """Merge ``record`` (the newest, committed under the lock) into the slot."""
        if record.ok:
            self.result, self.failure = record, None
        else:
            self.failure = record


@dataclass
class Results:
    """The content of ``results.json``: ``{experiment: {mode: Slot}}``."""

    experiments: dict[str, dict[Mode, Slot]] = field(default_factory=dict)

    def slot(self, experiment: str, mode: Mode) -> Slot:
        """The slot of ``experiment`` in ``mode`` (empty if nothing ran)."""
        return self.experiments.get(experiment, {}).get(mode, Slot())

    def done(self, experiment: str, key: RunKey, out_dir: Path) -> RunRecord | None:
        """The good record of a run with this ``key`` whose figures are all on disk, if any."""
        result = self.slot(experiment, key.mode).result
        if result is None or result.key != key:
            return None
        return result if all((out_dir / f).exists() for f in result.figures) else None

    def put(self, record: RunRecord) -> None:
        """Merge ``record`` into its experiment's slot of its mode."""
        slots = self.experiments.setdefault(record.experiment, {})
        slots.setdefault(record.key.mode, Slot()).put(record)

    def to_json(self) -> dict[str, Json]:
        """The whole file as JSON data."""
        experiments: dict[str, Json] = {}
        for name, slots in self.experiments.items():
            modes: dict[str, Json] = {}
            for mode in MODES:
                slot = slots.get(mode)
                if slot is None:
                    continue
                entry = {"result": slot.result, "failure": slot.failure}
                modes[mode] = {k: r.to_json() for k, r in entry.items() if r}
            experiments[name] = modes
        return {"schema": SCHEMA, "experiments": experiments}

    @classmethod
    def from_json(cls, data: Any) -> Results:
        """Parse what :meth:`to_json` wrote; ``ValueError`` saying what is wrong for anything
        else (a wrong type anywhere, a record in the wrong slot)."""
        if not isinstance(data, dict) or data.get("schema") != SCHEMA:
            raise ValueError(f"not a results file of schema {SCHEMA}")
        experiments = data.get("experiments")
        if not isinstance(experiments, dict):
            raise ValueError(f"'experiments' must be an object, got {experiments!r:.40}")
        results = cls()
        for name, slots in experiments.items():
            if not isinstance(slots, dict):
                raise ValueError(f"the modes of {name!r} must be an object, got {slots!r:.40}")
            for mode, entry in slots.items():
                if mode not in MODES or not isinstance(entry, dict):
                    raise ValueError(f"{name!r} has an unknown mode {mode!r} or a bad slot")
                slot = Slot(*(_slot_record(entry, part, name, mode) for part in _PARTS))
                results.experiments.setdefault(name, {})[mode] = slot
        return results

    @classmethod
    def parse(cls, raw: bytes) -> Results:
        """The records of a ``results.json`` file's bytes; ``ValueError`` (with the reason)
        unless they are strict JSON in UTF-8 of this schema, as :meth:`to_json` writes them.

        Python's ``json`` reads ``NaN``, ``Infinity`` and numbers beyond the float range (1e400
        is infinity) but refuses to write them back, so they are refused here, where the file
        can still be moved aside, rather than when the next record is committed.
        """
        try:
            return cls.from_json(
                json.loads(
                    raw.decode("utf-8"), parse_constant=_refuse_constant, parse_float=_finite_float
                )
            )
        except RecursionError:
            raise ValueError("nested too deeply") from None


_PARTS = ("result", "failure")


def _slot_record(entry: dict[str, Any], part: str, name: str, mode: str) -> RunRecord | None:
    """The ``part`` ("result": a good record, "failure": a failed one) of ``name``'s slot in
    ``mode``, or None; ``ValueError`` for a record that does not belong there."""
    if part not in entry:
        return None
    record = RunRecord.from_json(entry[part])
    if record.experiment != name or record.key.mode != mode or record.ok != (part == "result"):
        raise ValueError(f"the {part} of {name!r} in mode {mode!r} is a record of another slot")
    return record


def _refuse_constant(name: str) -> float:
    raise ValueError(f"{name} is not JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text[:40]} is beyond the float range")
    return value


def figure_folder(mode: Mode) -> str:
    """Where a mode's figures go, relative to the output folder: full runs at the top, quick
    runs in ``quick/`` (so a quick run never replaces a full run's figures)."""
    return "" if mode == "full" else "quick"


@contextlib.contextmanager
def atomic_file(path: Path, suffix: str = ".tmp") -> Iterator[str]:
    """Yield the name of a temporary file next to ``path`` to write; when the block ends without
    an error, give the file the usual permissions (``mkstemp`` makes it 0600) and move it onto
    ``path`` with ``os.replace``, so a reader (or an interrupted run) sees the old file or the new
    one, never half of one. On an error the temporary file is removed and ``path`` is untouched.
    ``suffix`` is the temporary name's ending (matplotlib picks the image format from it). The
    name carries this process's id, so a later run can remove it if this process is killed."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=_temp_prefix(path.name), suffix=suffix)
    os.close(fd)
    try:
        yield tmp
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically (:func:`atomic_file`), flushed to disk first."""
    with atomic_file(path) as tmp, open(tmp, "w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())


def _temp_prefix(name: str) -> str:
    return f".{name}.{os.getpid()}.tmp-"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


class ResultsStore:
    """``results.json`` of one output folder, with the rules of this module.

    ``warn(message)`` prints a one-line warning (a backed-up unreadable file).
    """

    def __init__(self, out_dir: Path, warn: Callable[[str], None]) -> None:
        self.out_dir = Path(out_dir)
        self.path = self.out_dir / RESULTS
        self._warn = warn

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        with open(self.out_dir / LOCK, "a+b") as handle:
            if fcntl is not None:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                if fcntl is not None:
                    fcntl.flock(handle.fileno(), fcntl.LOCK_UN)

    def load(self) -> Results:
        """What the file holds now (empty if it is missing or unreadable; no lock needed: the
        file is only ever replaced whole)."""
        try:
            return Results.parse(self.path.read_bytes())
        except (OSError, ValueError):
            return Results()

    def _read_for_update(self) -> Results:
        """The file's records (call under the lock); an unreadable file is renamed aside."""
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return Results()
        try:
            return Results.parse(raw)
        except ValueError as err:  # UnicodeDecodeError and json.JSONDecodeError included
            backup = self.path.with_name(f"{RESULTS}.unreadable-{time.strftime('%Y%m%dT%H%M%S')}")
            os.replace(self.path, backup)
            reason = str(err).splitlines()[0][:80] if str(err) else type(err).__name__
            self._warn(
                f"{self.path} could not be read ({reason}); kept it as {backup.name} and "
                "started a new one"
            )
            return Results()

    def prepare(self) -> list[Path]:
        """At the start of a run: remove stale temporary files of killed runs and move an
        unreadable ``results.json`` aside (with a warning). Returns the removed paths."""
        with self._locked():
            removed = self._remove_stale()
            self._read_for_update()
        return removed

    def _remove_stale(self) -> list[Path]:
        removed = []
        for folder in (self.out_dir, self.out_dir / figure_folder("quick")):
            if not folder.is_dir():
                continue
            for path in folder.iterdir():
                match = _TEMP.match(path.name)
                if match is None or _alive(int(match["pid"])):
                    continue
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    path.unlink(missing_ok=True)
                removed.append(path)
        return removed

    @contextlib.contextmanager
    def staging(self) -> Iterator[Path]:
        """A private folder to draw one run's figures into; removed when the block ends (the
        figures of a committed good record have been moved out of it by then)."""
        folder = Path(tempfile.mkdtemp(dir=self.out_dir, prefix=_temp_prefix("staging")))
        try:
            yield folder
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    def commit(
        self, record: RunRecord, staged: Path | None, render: Callable[[Results], None]
    ) -> RunRecord:
        """Merge ``record`` into ``results.json`` under the lock and render the reports.

        A good record's figures (``record.figures``: file names inside ``staged``) are moved
        into the mode's figure folder first and the stored record names them there. The record
        is stamped with the commit time. Raises ``OSError`` when the folder cannot be written;
        then ``results.json`` and the figures are as they were.
        """
        with self._locked():
            results = self._read_for_update()
            stamp = time.strftime("%Y-%m-%dT%H:%M:%S%z")
            record = replace(record, finished_at=stamp)
            moves: list[tuple[Path, Path]] = []
            if record.ok and staged is not None:
                moves = self._figure_moves(record, staged)
                placed = tuple(str(dst.relative_to(self.out_dir)) for _, dst in moves)
                record = replace(record, figures=placed)
            results.put(record)
            write_atomic(self.path, json.dumps(results.to_json(), indent=1, allow_nan=False))
            for src, dst in moves:  # after results.json: a full disk leaves the old figures
                os.replace(src, dst)
            render(results)
        return record

    def render(self, render: Callable[[Results], None]) -> None:
        """Call ``render`` with the file's records, under the lock (to render the reports
        again, e.g. once the optimizer playground they link is written)."""
        with self._locked():
            render(self._read_for_update())

    def _figure_moves(self, record: RunRecord, staged: Path) -> list[tuple[Path, Path]]:
        folder = self.out_dir / figure_folder(record.key.mode)
        folder.mkdir(exist_ok=True)
        return [(staged / name, folder / name) for name in record.figures]
