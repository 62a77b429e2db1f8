"""Progress of long steps: one updating line on a terminal, plain lines in a file or a pipe.

Every mode reports its long steps through a `Task`: evaluation per attack and batch, curves
per point, transfer per source x target, the audit per measurement, the analyses per
analysis, AutoAttack per stage. A step is reported as the fraction of its work done (in [0, 1])
and a note saying what is being done ("4500/10000 examples, accuracy 41.20%"); the task adds
the elapsed time and an estimate of what is left.

* On a terminal (`stream.isatty()`, and TERM is not 'dumb'): one line, redrawn in place with
  a carriage return at most every `TERMINAL_REDRAW` seconds, and once a second by a timer
  thread so the elapsed time moves while a batch runs; the line ends when the task closes.
* In a file or a pipe: plain lines, no control characters. A line when the work reaches a
  new tenth, unless the step looks short (elapsed / fraction done under `SHORT` seconds): at
  most ten lines a step, and none for a step of a second or two; a line every
  `FILE_HEARTBEAT` seconds while nothing else was written (a long batch: the progress is then
  estimated from the rate so far, marked '~'); and a last line when the task closes.

Long batches cannot report from inside the attack's compiled loop without slowing it, so
between two updates the timer estimates the progress from the rate of the updates before
(`lrm_tf/eval` calls the task once per batch). Works without absl or TensorFlow.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence

Report = Callable[..., None]  # report(fraction in [0, 1], note='')

TERMINAL_REDRAW = 0.1  # seconds between two redraws of the terminal line
TICK = 1.0  # seconds between two wake-ups of the timer thread
SHORT = 5.0  # a step projected to take less (seconds) writes only its last line to a file
FILE_HEARTBEAT = 30.0  # a line in a file at least this often while a task runs
STEPS = 10  # a file gets a line when the work reaches a new 1/STEPS


def is_terminal(stream) -> bool:
    """Whether `stream` is an interactive terminal that understands a carriage return."""
    if os.environ.get("TERM") == "dumb":
        return False
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


def duration(seconds: float) -> str:
    """'42s', '3m05s', '2h01m'."""
    seconds = max(int(round(seconds)), 0)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def part(report: Report, start: float, end: float, prefix: str = "") -> Report:
    """A report for a part of a step: its fraction f becomes start + (end - start) f of `report`.

    Args:
      report: the step's report (a `Task`, another part or `silent`).
      start, end: the part's share of the step, 0 <= start <= end <= 1.
      prefix: put before the part's notes ('point 3/8: ').

    Returns:
      report(fraction, note='') for the part.
    """

    def report_part(fraction: float, note: str = "") -> None:
        report(start + (end - start) * min(max(fraction, 0.0), 1.0), prefix + note)

    return report_part


def split(report: Report, weights: Sequence[float], prefixes: Sequence[str]) -> list[Report]:
    """Consecutive parts of a step, each with a share of `report` in proportion to its weight.

    Args:
      report: the step's report.
      weights: each part's work (e.g. `lrm_tf.eval.cost.attack_cost` x examples), >= 0.
      prefixes: each part's note prefix ('point 3/8, eps 0.0314: ').

    Returns:
      One report per part (`part`).
    """
    total = float(sum(weights)) or 1.0
    ends = [sum(weights[: i + 1]) / total for i in range(len(weights))]
    return [part(report, a, b, p) for a, b, p in zip([0.0, *ends[:-1]], ends, prefixes)]


class Task:
    """The progress of one step, written to `stream` (see the module docstring).

    Use as a context manager, or call `close()`; call the task with the fraction done.

    Args:
      label: what the step is ('pgd20_xent', 'curve eps', 'audit').
      stream: where lines go (default: `sys.stdout` when the task is made).
      terminal: whether to draw one updating line (default: `is_terminal(stream)`).
      clock: seconds, monotonic (tests pass a fake one).
      timer: run the timer thread (tests with a fake clock call `tick()` instead).
      short, heartbeat: the file rate (`SHORT`, `FILE_HEARTBEAT`).
    """

    def __init__(
        self,
        label: str,
        stream=None,
        *,
        terminal: bool | None = None,
        clock: Callable[[], float] = time.monotonic,
        timer: bool = True,
        short: float = SHORT,
        heartbeat: float = FILE_HEARTBEAT,
    ):
        self.label = label
        self.stream = stream if stream is not None else sys.stdout
        self.terminal = is_terminal(self.stream) if terminal is None else terminal
        self.clock, self.short, self.heartbeat = clock, short, heartbeat
        self.lines = 0  # lines written (files) or redraws (terminal)
        self.fraction, self.note = 0.0, ""
        self._start = self._last_write = clock()
        self._last_update: float | None = None  # when the task was last called
        self._increment = 0.0  # the fraction the last update added
        self._written_step = 0  # the tenth of the last line in a file
        self._shown = False  # a terminal line is on screen
        self._closed = False
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._thread = None
        if timer:
            self._thread = threading.Thread(target=self._run_timer, name=f"progress {label}", daemon=True)
            self._thread.start()

    def __enter__(self) -> Task:
        return self

    def __exit__(self, kind, value, traceback) -> None:
        self.close(final=kind is None)

    def __call__(self, fraction: float, note: str = "") -> None:
        """Reports `fraction` of the step done (clipped to [0, 1], never going back)."""
        with self._lock:
            if self._closed:
                return
            now = self.clock()
            fraction = min(max(float(fraction), self.fraction), 1.0)
            self._increment = fraction - self.fraction
            self.fraction, self.note = fraction, note
            self._last_update = now
            if self.terminal:
                if now - self._last_write >= TERMINAL_REDRAW or fraction >= 1.0:
                    self._draw(now)
            else:
                step = int(fraction * STEPS + 1e-9)
                long = now - self._start >= self.short * fraction
                if step > self._written_step and fraction < 1.0 and long:
                    self._written_step = step
                    self._write_line(self.text(now), now)

    def tick(self) -> None:
        """What the timer does: redraw the terminal line, or a heartbeat line in a file."""
        with self._lock:
            if self._closed:
                return
            now = self.clock()
            if self.terminal:
                self._draw(now)
            elif now - self._last_write >= self.heartbeat:
                self._write_line(self.text(now, estimate=True), now)

    def say(self, text: str, log: Callable[[str], None] = print) -> None:
        """Passes `text` to `log` (which writes to the same stream) above the terminal line."""
        with self._lock:
            if self.terminal and self._shown:
                self.stream.write("\r\x1b[K")
                self.stream.flush()
                self._shown = False
            log(text)

    def close(self, note: str | None = None, final: bool = True) -> None:
        """Ends the task: the last line (100%, the elapsed time, no estimate), once.

        Args:
          note: replaces the last note.
          final: False after an error: a terminal line is only ended, a file gets nothing.
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._stop.set()
            now = self.clock()
            self.note = self.note if note is None else note
            self.fraction = 1.0 if final else self.fraction  # done, even where parts had no work
            text = f"{self.label}: {self._summary(self.note)} [{duration(now - self._start)}]"
            if self.terminal:
                if final:
                    self._draw(now, text)
                if self._shown:
                    self.stream.write("\n")
                    self.stream.flush()
            elif final:
                self._write_line(text, now)
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5.0)

    def estimate(self, now: float) -> tuple[float, float | None]:
        """(fraction done, estimated now from the rate so far; seconds left, or None if unknown).

        The rate is the average since the start: cautious while the first batch (which also
        compiles the attack) weighs, and steady on long steps. Between two updates the
        estimate grows at that rate by at most the last update's increment (one more batch).
        What is left is the rest after the estimate, at that rate: a batch slower than the
        rate holds it still instead of running it down to zero (an AutoAttack stage's batch
        can take minutes). None once the estimate reaches the end (the last batch is late).
        """
        if self._last_update is None or self._last_update <= self._start or self.fraction <= 0:
            return self.fraction, None
        rate = self.fraction / (self._last_update - self._start)
        since = now - self._last_update
        guess = min(self.fraction + rate * since, self.fraction + self._increment, 1.0)
        return guess, (1.0 - guess) / rate if guess < 1.0 else None

    def text(self, now: float, estimate: bool = False) -> str:
        """The progress line (no control characters)."""
        fraction, left = self.estimate(now)
        shown = fraction if estimate else self.fraction
        mark = "~" if estimate and shown > self.fraction else ""
        timing = f"{duration(now - self._start)} elapsed"
        if left is not None and self.fraction < 1.0:
            timing += f", ~{duration(left)} left"
        if estimate and self._last_update is not None and now - self._last_update >= 1.0:
            timing += f"; last update {duration(now - self._last_update)} ago"
        return f"{self.label}: {self._summary(self.note, shown, mark)} [{timing}]"

    def _summary(self, note: str, fraction: float | None = None, mark: str = "") -> str:
        fraction = self.fraction if fraction is None else fraction
        return f"{mark}{100 * fraction:.0f}%".rjust(4) + (f" {note}" if note else "")

    def _draw(self, now: float, text: str | None = None) -> None:
        text = self.text(now, estimate=True) if text is None else text
        width = shutil.get_terminal_size((100, 20)).columns - 1
        self.stream.write("\r" + text[:width] + "\x1b[K")
        self.stream.flush()
        self._shown = True
        self._last_write = now
        self.lines += 1

    def _write_line(self, text: str, now: float) -> None:
        self.stream.write(text + "\n")
        self.stream.flush()
        self._last_write = now
        self.lines += 1

    def _run_timer(self) -> None:
        while not self._stop.wait(TICK):
            try:
                self.tick()
            except (OSError, ValueError):  # the stream went away
                return


def say(report: Report, text: str, log: Callable[[str], None] = print) -> None:
    """Passes `text` to `log`, above the terminal line when `report` is a `Task` drawing one."""
    if isinstance(report, Task):
        report.say(text, log)
    else:
        log(text)


def silent(fraction: float, note: str = "") -> None:
    """A report that reports nothing."""


@contextlib.contextmanager
def reporting(label: str, progress: bool | Report | None) -> Iterator[Report]:
    """The report of a function that takes a `progress` argument.

    Args:
      label: the label of the task made when `progress` is True.
      progress: True: a new `Task`, closed when the block ends; False or None: `silent`; a
        report (a `Task` or a `part` of one): itself.

    Yields:
      report(fraction, note='').
    """
    if progress is True:
        with Task(label) as made:
            yield made
    else:
        yield progress or silent
