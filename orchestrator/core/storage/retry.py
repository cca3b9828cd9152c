"""When and how often a storage request is retried.

Only :class:`~orchestrator.core.errors.TransientError` is retried (timeouts, throttling, 5xx, refused
or dropped connections), with exponential backoff and full jitter, bounded both in attempts and
in total time. Not found, permission denied and precondition failed are answers, not accidents:
they are never retried. The SDKs' own retries are switched off in every backend so that this is
the only retry loop and its bounds hold.

The policy is a value passed to :func:`~orchestrator.core.storage.open_storage`; tests pass one with
zero waits (:data:`NO_WAIT_RETRY`) or :data:`NO_RETRY`, so nothing sleeps needlessly.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import stamina

from orchestrator.core.errors import TransientError

__all__ = ["DEFAULT_RETRY", "NO_RETRY", "NO_WAIT_RETRY", "RetryPolicy", "call_with_retry"]

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Bounds for retrying one request. Waits grow ``wait_initial * 2**n`` up to ``wait_max``,
    plus up to ``wait_jitter`` of random jitter; no retry starts after ``timeout`` seconds."""

    attempts: int = 4
    timeout: float = 15.0
    wait_initial: float = 0.25
    wait_max: float = 2.0
    wait_jitter: float = 0.25

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError(f"RetryPolicy.attempts must be at least 1, not {self.attempts}")
        if min(self.timeout, self.wait_initial, self.wait_max, self.wait_jitter) < 0:
            raise ValueError("RetryPolicy times must not be negative")


# Four attempts with waits of about 0.25, 0.5 and 1 s (plus jitter): a refused connection (an
# emulator or endpoint that is down) fails within about 2.5 s with a clear message, while a brief
# throttle or dropped connection is ridden out. A sync re-run finishes whatever a longer outage
# left undone, so waiting longer here would only delay the report of the clouds that did work.
DEFAULT_RETRY = RetryPolicy()
NO_RETRY = RetryPolicy(attempts=1)
# For tests: the same number of attempts as the default, without sleeping between them.
NO_WAIT_RETRY = RetryPolicy(wait_initial=0.0, wait_max=0.0, wait_jitter=0.0)


def call_with_retry(policy: RetryPolicy, fn: Callable[[], T], *, target: str) -> T:
    """Call ``fn`` until it returns, raises something other than TransientError, or the policy
    is exhausted; the final TransientError then says how many attempts were made over how long."""
    started = time.monotonic()
    attempts = 0
    try:
        for attempt in stamina.retry_context(
            on=TransientError,
            attempts=policy.attempts,
            timeout=policy.timeout,
            wait_initial=policy.wait_initial,
            wait_max=policy.wait_max,
            wait_jitter=policy.wait_jitter,
        ):
            with attempt:
                attempts = attempt.num
                return fn()
    except TransientError as exc:
        if attempts <= 1:
            raise
        detail = str(exc).removeprefix(f"{exc.uri}: ") if exc.uri else str(exc)
        elapsed = time.monotonic() - started
        raise TransientError(
            f"{detail} (gave up after {attempts} attempts in {elapsed:.1f} s)", uri=exc.uri or target
        ) from exc
    # retry_context yields at least once and the block either returns or raises.
    raise AssertionError("unreachable")  # pragma: no cover
