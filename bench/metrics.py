"""What the harness measures besides wall time: worker RSS, Redis memory, stored result sizes."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import psutil
import redis

RESULT_KEY_PATTERN = "celery-task-meta-*"
# Reading smaps for PSS costs CPU the run needs: once a second is enough for a peak that moves
# slowly.
SAMPLE_INTERVAL_S = 1.0


class TreeRssSampler:
    """Samples the peak RSS of one process and of the largest of its children, in a thread."""

    def __init__(self, pid: int, interval_s: float = SAMPLE_INTERVAL_S) -> None:
        self.pid = pid
        self.interval_s = interval_s
        self.peak_total_bytes = 0
        self.peak_child_bytes = 0
        # RSS counts the pages forked children share with their parent once per process;
        # PSS splits them, so its sum is what the worker really costs the machine.
        self.peak_total_pss_bytes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> TreeRssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval_s)

    def sample(self) -> None:
        try:
            root = psutil.Process(self.pid)
            procs = [root, *root.children(recursive=True)]
            infos = [p.memory_full_info() for p in procs]
        except psutil.Error:
            return
        sizes = [info.rss for info in infos]
        self.peak_total_bytes = max(self.peak_total_bytes, sum(sizes))
        pss = sum(getattr(info, "pss", info.rss) for info in infos)
        self.peak_total_pss_bytes = max(self.peak_total_pss_bytes, pss)
        self.peak_child_bytes = max(self.peak_child_bytes, max(sizes[1:], default=0))


@dataclass
class RedisUsage:
    baseline_bytes: int
    peak_bytes: int = 0
    largest_result_bytes: int = 0
    result_count: int = 0

    @property
    def used_by_run_bytes(self) -> int:
        return max(0, self.peak_bytes - self.baseline_bytes)


class RedisSampler:
    """Peak ``used_memory`` during a run, relative to before it, in a thread."""

    def __init__(self, client: redis.Redis, interval_s: float = SAMPLE_INTERVAL_S) -> None:
        self.client = client
        self.usage = RedisUsage(baseline_bytes=self._used())
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _used(self) -> int:
        return int(self.client.info("memory")["used_memory"])

    def __enter__(self) -> RedisSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.usage.peak_bytes = max(self.usage.peak_bytes, self._used())
        self.usage.largest_result_bytes, self.usage.result_count = largest_result(self.client)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.usage.peak_bytes = max(self.usage.peak_bytes, self._used())
            self._stop.wait(self.interval_s)


def largest_result(client: redis.Redis) -> tuple[int, int]:
    """The largest stored task result in bytes, and how many results are stored."""
    largest = count = 0
    for key in client.scan_iter(match=RESULT_KEY_PATTERN, count=1000):
        count += 1
        largest = max(largest, int(client.strlen(key)))
    return largest, count


def now_s() -> float:
    return time.perf_counter()
