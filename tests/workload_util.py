"""Running the demo workload in a test: until what the test reads exists, then stopped."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any


def run_workload_until(workload: Any, seen: Callable[[], bool], deadline_s: float = 60.0) -> None:
    """Run ``workload`` on a thread until ``seen()`` (polled, with a deadline), then stop
    it and wait for it to finish."""
    stop = threading.Event()
    runner = threading.Thread(target=workload.run, args=(None, stop), daemon=True)
    runner.start()
    deadline = time.monotonic() + deadline_s
    try:
        while time.monotonic() < deadline and runner.is_alive() and not seen():
            time.sleep(0.05)
    finally:
        stop.set()
        runner.join(timeout=30)
    assert not runner.is_alive()
