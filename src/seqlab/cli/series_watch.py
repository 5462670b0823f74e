"""`seqlab series watch RUN [CSV|-]`: score a live series as its points arrive.

    some_feed | seqlab series watch RUN -                 # stdin, until it closes
    seqlab series watch RUN metrics.csv --follow --idle-timeout 600 --events-out alarms.csv

Reads a CSV with a header line (the model's timestamp and value columns) from stdin or a file;
with `--follow` a file is read like `tail -f`: new lines are scored as they are appended, until
`--idle-timeout` seconds pass without one (default: forever). Points are scored by
`seqlab.series.online.OnlineScorer`; each event is printed when it opens and when it closes,
and with `--events-out` appended to a CSV (one line per write, flushed and fsync'ed: a reader
never sees half a line). A bad row (wrong number of fields, a value that is not a number, an
unreadable timestamp) is reported on stderr as one line naming it, and skipped: the stream
goes on. `--refit-every N` refits the model and threshold on the recent unflagged points every
N points (walk-forward). Any series model streams, AER regression models (`--regression`)
included: their points wait for the window after them (see `seqlab.series.online`).
"""

from __future__ import annotations

import csv
import os
import select
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import click
import numpy as np

from seqlab.cli.options import device_option
from seqlab.errors import UserError
from seqlab.series.io import TIMESTAMP_NAMES

EVENT_FIELDS = ["event", "start", "end", "start_index", "end_index", "peak_score",
                "threshold"]
FLUSH_POINTS = 256   # score at least this often when points arrive faster than they are read


def _lines(f: IO[str], follow: bool, idle_timeout: float | None,
           poll: float = 0.2) -> Iterator[str | None]:
    """Complete lines of f as they arrive; None whenever nothing more is available right now
    (the caller scores what it has). Ends at end of input (stdin, or a file without `follow`)
    or after `idle_timeout` seconds without a new line."""
    is_file = f is not sys.stdin
    buf = ""
    last = time.monotonic()
    while True:
        if not is_file:
            try:
                ready = select.select([f], [], [], 0)[0]
            except (OSError, ValueError):   # not selectable (e.g. a test's StringIO)
                ready = [f]
            if not ready:
                yield None
                wait = None if idle_timeout is None else idle_timeout
                if not select.select([f], [], [], wait)[0]:
                    return                                   # idle timeout on stdin
        chunk = f.readline()
        if chunk:
            buf += chunk
            if buf.endswith("\n"):
                yield buf
                buf = ""
                last = time.monotonic()
            continue
        if not is_file or not follow:                        # end of input
            break
        yield None
        if idle_timeout is not None and time.monotonic() - last > idle_timeout:
            break
        time.sleep(poll)
    if buf:
        yield buf


class _RowParser:
    """Header -> which fields are the model's values and timestamp; rows -> (values, time) or
    a one-line complaint."""

    def __init__(self, header: list[str], est, source: str):
        names = [h.strip() for h in header]
        self.source = source
        ts_name = est.timestamp_name_
        self.ts_index = None
        if ts_name and ts_name in names:
            self.ts_index = names.index(ts_name)
        else:
            lower = [n.lower() for n in names]
            for cand in TIMESTAMP_NAMES:
                if cand in lower:
                    self.ts_index = lower.index(cand)
                    break
        if est.columns_from_names_:
            missing = [c for c in est.columns_ if c not in names]
            if missing:
                raise UserError(f"{source} line 1: the model was trained on columns "
                                f"{', '.join(est.columns_)}; missing here: {', '.join(missing)} "
                                f"(header has {', '.join(names)})")
            self.value_index = [names.index(c) for c in est.columns_]
        else:
            self.value_index = [i for i in range(len(names)) if i != self.ts_index]
            if len(self.value_index) != est.n_features_:
                raise UserError(f"{source} line 1: {len(self.value_index)} value columns, the "
                                f"model was trained on {est.n_features_}")
        self.names = names
        season = getattr(est, "season_", None)
        self.needs_time = season is not None and season.any_active
        if self.needs_time and self.ts_index is None:
            raise UserError(f"{source} line 1: this model removes a daily profile, so the "
                            f"stream needs a timestamp column")

    def parse(self, line: str, lineno: int) -> tuple[np.ndarray, object] | str:
        fields = next(csv.reader([line]), [])
        if len(fields) != len(self.names):
            return f"{self.source} line {lineno}: expected {len(self.names)} fields, got " \
                   f"{len(fields)}; skipped"
        values = np.empty(len(self.value_index))
        for j, i in enumerate(self.value_index):
            try:
                values[j] = float(fields[i])
            except ValueError:
                values[j] = np.nan
            if not np.isfinite(values[j]):
                return f"{self.source} line {lineno}: column {self.names[i]!r}: " \
                       f"{fields[i].strip()!r} is not a finite number; skipped"
        t: object = None
        if self.ts_index is not None:
            t = fields[self.ts_index].strip()
            if self.needs_time:
                try:
                    t = np.datetime64(t, "ns")
                except ValueError:
                    return f"{self.source} line {lineno}: column " \
                           f"{self.names[self.ts_index]!r}: {t!r} is not a timestamp; skipped"
        return values, t


class _EventLog:
    """Events appended to a CSV, one os.write per line (O_APPEND), fsync'ed."""

    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        if os.fstat(self.fd).st_size == 0:
            self._write(EVENT_FIELDS)

    def _write(self, row: list) -> None:
        text = ",".join("" if v is None else str(v) for v in row) + "\n"
        os.write(self.fd, text.encode("utf-8"))
        os.fsync(self.fd)

    def add(self, ev: dict) -> None:
        self._write([ev[k] for k in EVENT_FIELDS])

    def close(self) -> None:
        os.close(self.fd)


def _say(ev, lines: dict[int, int]) -> str:
    """One line for an event opening or closing."""
    def where(i: int, t: object) -> str:
        return f"point {i} (line {lines.get(i, '?')}" + (f", {t})" if t is not None else ")")

    if ev.kind == "open":
        return f"OPEN  anomaly at {where(ev.start, ev.start_time)}: score {ev.peak:.4g} > " \
               f"threshold {ev.threshold:.4g}"
    return f"CLOSE anomaly {where(ev.start, ev.start_time)} .. {where(ev.end, ev.end_time)}: " \
           f"peak score {ev.peak:.4g}"


@click.command("watch")
@click.argument("run", type=click.Path(path_type=Path))
@click.argument("source", default="-")
@click.option("--follow/--no-follow", default=False, show_default=True,
              help="Keep reading a file as it grows (like tail -f).")
@click.option("--idle-timeout", default=None, type=click.FloatRange(0, min_open=True),
              help="Stop after this many seconds without a new line [default: never].")
@click.option("--events-out", default=None, type=click.Path(path_type=Path),
              help="Append each event opening and closing to this CSV.")
@click.option("--refit-every", default=None, type=click.IntRange(1),
              help="Refit model and threshold every N points on the recent unflagged points.")
@click.option("--refit-span", default=None, type=click.IntRange(1),
              help="Points the refit uses [default: max(refit-every, 8 x window)].")
@click.option("--min-gap", default=None, type=click.IntRange(0),
              help="Merge events fewer than this many points apart [default: window // 2].")
@click.option("--batch-windows", default=1, show_default=True, type=click.IntRange(1),
              help="Run the model once this many windows are ready: less CPU per point, "
                   "(N - 1) x score stride points more delay.")
@device_option(default="cpu")
def watch_cmd(run: Path, source: str, follow: bool, idle_timeout: float | None,
              events_out: Path | None, refit_every: int | None, refit_span: int | None,
              min_gap: int | None, batch_windows: int, device: str) -> None:
    """Watch a live series (SOURCE: a CSV file, or - for stdin) with the model in RUN."""
    from seqlab.series.estimator import SeriesAutoencoder
    from seqlab.series.online import OnlineScorer

    if events_out is not None and events_out.is_dir():
        raise UserError(f"{events_out}: is a directory, expected a file path")
    est = SeriesAutoencoder.load(run, device=device)
    try:
        scorer = OnlineScorer(est, min_gap=min_gap, refit_every=refit_every,
                              refit_span=refit_span, batch_windows=batch_windows)
    except ValueError as err:
        raise UserError(f"{run}: {err}") from None
    name = "stdin" if source == "-" else source
    if source == "-":
        f: IO[str] = sys.stdin
    else:
        try:
            f = open(source, encoding="utf-8", newline="")  # noqa: SIM115
        except OSError as err:
            raise UserError(f"{source}: cannot read ({err.strerror})") from None
    log = _EventLog(events_out) if events_out is not None else None
    parser: _RowParser | None = None
    lineno, skipped = 0, 0
    pending: list[np.ndarray] = []
    times: list[object] = []
    lines: dict[int, int] = {}       # stream point -> file line, for the open events' messages

    def score(final: bool = False) -> None:
        events = []
        if pending:
            with_times = parser is not None and parser.ts_index is not None
            events += scorer.update(np.stack(pending), times if with_times else None)
            pending.clear()
            times.clear()
        if final:
            events += scorer.close()
        for ev in events:
            click.echo(_say(ev, lines))
            if log is not None:
                log.add(ev.as_dict())
            if ev.kind == "close" and ev.end is not None:
                for i in [k for k in lines if k <= ev.end]:
                    del lines[i]
        sys.stdout.flush()

    try:
        for line in _lines(f, follow, idle_timeout):
            if line is None:
                if parser is not None:
                    score()
                continue
            lineno += 1
            if not line.strip():
                continue
            if parser is None:
                parser = _RowParser(next(csv.reader([line])), est, name)
                continue
            row = parser.parse(line, lineno)
            if isinstance(row, str):
                click.echo(row, err=True)
                skipped += 1
                continue
            idx = scorer.n_seen + len(pending)
            lines[idx] = lineno
            if len(lines) > scorer.span + 2 * FLUSH_POINTS:  # keep the line map bounded
                lines.pop(next(iter(lines)))
            pending.append(row[0])
            times.append(row[1])
            if len(pending) >= FLUSH_POINTS:
                score()
        if parser is None:
            raise UserError(f"{name}: no header line (expected the model's columns "
                            f"{', '.join(est.columns_)})")
        score(final=True)
    except KeyboardInterrupt:
        if parser is not None:
            score(final=True)
    finally:
        if log is not None:
            log.close()
        if f is not sys.stdin:
            f.close()
    click.echo(f"{scorer.n_seen} points scored, {skipped} bad row(s) skipped, "
               f"{scorer.refits} refit(s)", err=True)
