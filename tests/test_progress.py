"""The progress reporter: status log.messages off a terminal at the interval (driven by a fake clock, no
sleeping), counts by status, rate and ETA; a bar (or a live line) on a terminal."""

from __future__ import annotations

import io
import logging
import time

import pytest

from robustbench_mr.progress import Progress, format_duration


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def log(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.INFO, logger="robustbench_mr.progress")
    return caplog  # log.messages: the status log.messages so far


def test_off_a_terminal_a_line_comes_every_interval_with_counts_rate_and_eta(log: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    p = Progress(10, "verify", interval=10, clock=clock, stream=io.StringIO())
    for status in ("verified", "verified", "falsified"):
        clock.now += 3  # 9 s in: no line yet
        p.update(status)
    assert log.messages == []
    clock.now += 3  # 12 s, 4 done: due
    p.update("timeout")
    assert log.messages == ["verify: 4/10 (verified 2, falsified 1, timeout 1), 0.33 inputs/s, elapsed 12s, ETA 18s"]
    clock.now += 1
    p.update("verified")  # 1 s after the last line: none
    assert len(log.messages) == 1
    assert p.rate == pytest.approx(5 / 13) and p.eta == pytest.approx(5 / (5 / 13))
    p.close()
    assert log.messages[-1] == "verify: stopped at 5/10 (verified 3, falsified 1, timeout 1), 0.38 inputs/s, elapsed 13s"
    p.close()  # idempotent
    assert len(log.messages) == 2


def test_a_batch_counts_each_status_and_the_last_line_says_done(log: pytest.LogCaptureFixture) -> None:
    from robustbench_mr.attacks.runner import AttackStatus

    clock = FakeClock()
    with Progress(3, "attack pgd", interval=10, clock=clock, stream=io.StringIO()) as p:
        clock.now += 2
        p.add([AttackStatus.ROBUST, AttackStatus.BROKEN, AttackStatus.ROBUST])
        assert p.counts == {"robust": 2, "broken": 1} and p.done == 3
    assert log.messages == ["attack pgd: done 3/3 (robust 2, broken 1), 1.50 inputs/s, elapsed 2s"]


def test_postfix_and_units(log: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    p = Progress(4, "train mlp mr", unit="batch", interval=0, clock=clock, stream=io.StringIO())
    clock.now += 1
    p.set_postfix(epoch="1/2", loss="0.512")
    p.update()
    assert log.messages[-1] == "train mlp mr: 1/4, 1.00 batches/s, elapsed 1s, ETA 3s, epoch 1/2, loss 0.512"


def test_before_the_first_input_the_eta_is_unknown() -> None:
    p = Progress(5, "vnncomp", unit="instance", clock=FakeClock(), stream=io.StringIO())
    assert p.rate is None and p.eta is None
    assert p.line() == "vnncomp: 0/5, 0 instances/s, elapsed 0s, ETA unknown"


def test_the_heartbeat_reports_while_nothing_finishes(log: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    p = Progress(2, "verify", interval=0.02, clock=clock, stream=io.StringIO(), heartbeat=True)
    try:
        clock.now += 60  # one slow input: no update at all
        deadline = time.monotonic() + 10
        while not log.messages and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        p.close()
    assert log.messages and log.messages[0].startswith("verify: 0/2") and "elapsed 1m00s" in log.messages[0]


def test_disabled_is_silent(log: pytest.LogCaptureFixture) -> None:
    stream = io.StringIO()
    p = Progress(3, "verify", enabled=False, interval=0, clock=FakeClock(), stream=stream)
    p.update("verified")
    p.close()
    assert log.messages == [] and stream.getvalue() == ""


def test_on_a_terminal_a_bar_and_no_log_lines(log: pytest.LogCaptureFixture) -> None:
    stream = io.StringIO()
    p = Progress(3, "verify", interval=0, clock=FakeClock(), stream=stream, tty=True)
    p.update("verified")
    p.echo("epoch 1: loss 0.5")
    p.close()
    assert log.messages == []
    out = stream.getvalue()
    assert "verify" in out and "1/3" in out and "epoch 1: loss 0.5" in out


def test_on_a_terminal_without_tqdm_a_live_line(log: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    import builtins

    real_import = builtins.__import__

    def no_tqdm(name: str, *args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        if name == "tqdm":
            raise ImportError("no tqdm")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_tqdm)
    stream = io.StringIO()
    clock = FakeClock()
    p = Progress(2, "verify", clock=clock, stream=stream, tty=True)
    clock.now += 1
    p.update("verified")
    p.close()
    assert "\rverify" in stream.getvalue().replace("\033[K", "") and "1/2 (verified 1)" in stream.getvalue()
    assert log.messages == []


@pytest.mark.parametrize(("seconds", "text"), [(0.4, "0s"), (59.6, "1m00s"), (61, "1m01s"), (3725, "1h02m")])
def test_durations(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text
