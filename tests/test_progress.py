"""The progress reporter (lrm_tf/report/progress.py): plain lines at a modest rate in a file,
one updating line on a terminal, elapsed time and an estimate of what is left (issue 15)."""

import io
import re
import time

import pytest

from lrm_tf.report import progress

CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")  # anything but \t and \n, ESC included


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def _task(terminal=False, **kw):
    clock, stream = Clock(), io.StringIO()
    task = progress.Task("pgd20_xent", stream, terminal=terminal, clock=clock, timer=False, **kw)
    return task, clock, stream


def _percents(text):
    return [int(m) for m in re.findall(r"^pgd20_xent: ~? *(\d+)%", text, re.M)]


def test_file_lines_every_tenth_of_a_step_longer_than_a_few_seconds():
    task, clock, stream = _task()
    for done in range(1, 101):  # 100 batches of 0.5 s: a 50 s step
        clock.now += 0.5
        task(done / 100, f"{done}/100 examples")
    task.close()
    text = stream.getvalue()
    assert not CONTROL.search(text)
    assert _percents(text) == [10, 20, 30, 40, 50, 60, 70, 80, 90, 100]
    assert text.splitlines()[-1] == "pgd20_xent: 100% 100/100 examples [50s]"
    assert "10/100 examples [5s elapsed, ~45s left]" in text.splitlines()[0]


def test_file_rate_is_modest():
    task, clock, stream = _task()
    for done in range(1, 1001):  # 1000 updates in 3 s: a short step writes its last line only
        clock.now += 0.003
        task(done / 1000)
    task.close()
    assert stream.getvalue().splitlines() == ["pgd20_xent: 100% [3s]"]
    task, clock, stream = _task()
    for done in range(1, 1001):  # 1000 updates in 30 s, the first tenth in 25 s: ten lines
        clock.now += 0.25 if done <= 100 else 5 / 900
        task(done / 1000)
    task.close()
    assert _percents(stream.getvalue()) == [10, 20, 30, 40, 50, 60, 70, 80, 90, 100]


def test_heartbeat_in_a_long_batch_estimates_from_the_rate():
    task, clock, stream = _task()
    clock.now = 10.0
    task(0.1, "1/10 batches")  # the first batch (compiling) took 10 s
    clock.now = 15.0
    task(0.2, "2/10 batches")  # then 5 s a batch
    for _ in range(70):  # a batch that hangs: 70 s without an update
        clock.now += 1.0
        task.tick()
    lines = stream.getvalue().splitlines()
    heartbeats = [line for line in lines if "last update" in line]
    assert len(heartbeats) == 2  # every FILE_HEARTBEAT = 30 s
    # From the average rate, 7.5 s a tenth: the estimate is capped at one batch more (30%),
    # and the 70% after it take 52.5 s at that rate, however long the late batch has run.
    assert heartbeats == [
        "pgd20_xent: ~30% 2/10 batches [45s elapsed, ~52s left; last update 30s ago]",
        "pgd20_xent: ~30% 2/10 batches [1m15s elapsed, ~52s left; last update 1m00s ago]",
    ]
    assert not CONTROL.search("\n".join(lines))


def test_a_late_last_batch_shows_no_time_left():
    task, clock, stream = _task()
    clock.now = 10.0
    task(0.5, "1/2 batches")
    clock.now = 20.0  # the estimate reached 100% with the second batch still running
    assert (
        task.text(clock.now, estimate=True)
        == "pgd20_xent: ~100% 1/2 batches [20s elapsed; last update 10s ago]"
    )
    clock.now = 15.0
    assert (
        task.text(clock.now, estimate=True)
        == "pgd20_xent: ~75% 1/2 batches [15s elapsed, ~5s left; last update 5s ago]"
    )


def test_terminal_line_updates_in_place_and_ends_with_a_newline():
    task, clock, stream = _task(terminal=True)
    for done in range(1, 11):
        clock.now += 1.0
        task(done / 10, f"{done}/10")
    clock.now += 1.0
    task.tick()  # the timer redraws the elapsed time
    task.close()
    text = stream.getvalue()
    assert text.count("\n") == 1 and text.endswith("\n")
    assert text.count("\r") == task.lines == 12
    assert "\x1b[K" in text
    assert text.split("\r")[-1].startswith("pgd20_xent: 100% 10/10 [11s]")


def test_say_writes_above_the_terminal_line():
    task, clock, stream = _task(terminal=True)
    clock.now = 1.0
    task(0.5, "half")
    task.say("a measurement", log=lambda text: stream.write(text + "\n"))
    task.close()
    assert "\r\x1b[Ka measurement\n" in stream.getvalue()


def test_error_ends_the_terminal_line_and_writes_nothing_more_in_a_file():
    for terminal in (True, False):
        task, clock, stream = _task(terminal=terminal)
        with pytest.raises(RuntimeError):
            with task:
                clock.now = 1.0
                task(0.05)
                raise RuntimeError
        assert stream.getvalue() == ("\r" + task.text(1.0, True) + "\x1b[K\n" if terminal else "")


def test_parts_and_split_map_fractions_and_never_go_back():
    got = []
    parts = progress.split(lambda f, note="": got.append((round(f, 6), note)), [1, 3], ["a: ", "b: "])
    parts[0](0.5, "x")
    parts[1](0.0)
    parts[1](1.0, "y")
    assert got == [(0.125, "a: x"), (0.25, "b: "), (1.0, "b: y")]
    task, clock, _ = _task()
    task(0.6)
    task(0.4)
    assert task.fraction == 0.6


def test_reporting_makes_a_task_or_reports_nothing(capsys):
    with progress.reporting("clean", True) as report:
        assert isinstance(report, progress.Task)
        report(1.0, "10/10 examples")
    with progress.reporting("clean", False) as report:
        assert report is progress.silent
    out = capsys.readouterr().out
    assert out.startswith("clean: 100% 10/10 examples [") and out.count("\n") == 1  # not a terminal


def test_timer_thread_writes_heartbeats_and_stops(monkeypatch):
    monkeypatch.setattr(progress, "TICK", 0.01)
    stream = io.StringIO()
    task = progress.Task("spsa100", stream, terminal=False, heartbeat=0.05)
    deadline = time.monotonic() + 30  # a busy machine may starve the thread for a while
    while stream.getvalue().count("\n") < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    task.close()
    lines = stream.getvalue().splitlines()
    assert (
        len(lines) >= 3 and lines[0].startswith("spsa100:   0% [") and lines[-1].startswith("spsa100: 100% [")
    )
    assert not task._thread.is_alive()


def test_duration():
    assert [progress.duration(s) for s in (0.4, 42, 185, 7260)] == ["0s", "42s", "3m05s", "2h01m"]
