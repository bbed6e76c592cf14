"""The job's one time budget: :class:`config.deadline.Deadline`."""

from __future__ import annotations

import math
import time

import pytest

from config.deadline import NO_DEADLINE, Deadline
from config.errors import JobTimeoutError


def test_no_deadline_never_expires() -> None:
    for d in (NO_DEADLINE, Deadline(), Deadline.of(None)):
        assert d.at is None and not d.expired()
        assert d.remaining() == math.inf
        assert d.timeout() is None and d.timeout(5.0) == 5.0
        assert d.earlier(10) == d
        d.check("anything")  # does not raise


def test_a_future_deadline_counts_down() -> None:
    d = Deadline(time.monotonic() + 60)
    assert not d.expired()
    assert 59 < d.remaining() <= 60
    timeout = d.timeout()
    assert timeout is not None and 59 < timeout <= 60
    assert d.timeout(2.0) == 2.0  # the smaller of the cap and the time left
    capped = d.timeout(600.0)
    assert capped is not None and capped <= 60
    d.check("the next step")


def test_a_past_deadline_has_expired_and_check_raises_a_retryable_timeout() -> None:
    d = Deadline(time.monotonic() - 1)
    assert d.expired() and d.remaining() == 0.0 and d.timeout(5.0) == 0.0
    with pytest.raises(JobTimeoutError, match="deadline reached before OCR") as info:
        d.check("OCR")
    assert info.value.retryable and info.value.kind == "timeout"


def test_expiry_is_at_the_instant() -> None:
    d = Deadline(time.monotonic() + 0.05)
    assert not d.expired()
    time.sleep(0.06)
    assert d.expired()


def test_earlier_moves_the_instant_by_the_margin() -> None:
    d = Deadline(time.monotonic() + 1.0)
    assert not d.expired() and d.earlier(2.0).expired()
    assert d.at is not None and d.earlier(0.5).at == pytest.approx(d.at - 0.5)


def test_of_accepts_the_float_handlers_pass_or_a_deadline() -> None:
    at = time.monotonic() + 30
    assert Deadline.of(at) == Deadline(at)
    d = Deadline(at)
    assert Deadline.of(d) is d
    with pytest.raises(ValueError, match="finite"):
        Deadline.of(math.inf)
    with pytest.raises(ValueError, match="finite"):
        Deadline.of(math.nan)


def test_deadline_is_a_value() -> None:
    at = time.monotonic()
    assert Deadline(at) == Deadline(at) and hash(Deadline(at)) == hash(Deadline(at))
    with pytest.raises(AttributeError):
        setattr(Deadline(at), "at", 0.0)  # noqa: B010 - frozen
