"""Many argon2id hashes at once, on a pool of processes sized to the cores (bulk imports).

One hash at the default cost takes ~0.1 s of one core and holds the GIL only briefly, but a thread
pool still shares the event loop's process: a 2,000-user import would keep every core busy inside
the serving process. Processes (started with ``forkserver``, never forked from a process running an
event loop and server threads) hash in parallel and leave the loop free; passwords travel to them
in chunks so the pickling cost is paid once per chunk, not per password.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

from argon2 import PasswordHasher, Type

__all__ = ["HashPool"]

_hasher: PasswordHasher | None = None


def _init(time_cost: int, memory_kib: int, parallelism: int) -> None:
    global _hasher  # one hasher per worker process, built once by the pool's initializer
    _hasher = PasswordHasher(time_cost=time_cost, memory_cost=memory_kib, parallelism=parallelism, type=Type.ID)


def _hash_chunk(passwords: list[str]) -> list[str]:
    assert _hasher is not None  # set by _init in every worker
    return [_hasher.hash(p) for p in passwords]


class HashPool:
    """``await pool.hash_many(passwords)`` → their argon2id hashes, in order. Started on first use, and
    started again when one of its processes died."""

    def __init__(self, *, time_cost: int, memory_kib: int, parallelism: int, processes: int = 0) -> None:
        self._params = (time_cost, memory_kib, parallelism)
        self.processes = processes or os.cpu_count() or 1
        self._pool: ProcessPoolExecutor | None = None

    def _executor(self) -> ProcessPoolExecutor:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(
                max_workers=self.processes,
                mp_context=multiprocessing.get_context("forkserver"),
                initializer=_init,
                initargs=self._params,
            )
        return self._pool

    async def hash_many(self, passwords: list[str]) -> list[str]:
        if not passwords:
            return []
        # A few chunks per process: every process stays busy to the end, few round trips.
        size = max(1, -(-len(passwords) // (self.processes * 4)))
        chunks = [passwords[i : i + size] for i in range(0, len(passwords), size)]
        try:
            done = await self._run(chunks)
        except BrokenProcessPool:
            # A process died (the OOM killer, a signal): hashing has no side effects, so once more on
            # the fresh executor ``_run`` left behind; a second death is the caller's error.
            done = await self._run(chunks)
        return [h for chunk in done for h in chunk]

    async def _run(self, chunks: list[list[str]]) -> list[list[str]]:
        pool = self._executor()
        loop = asyncio.get_running_loop()
        try:
            return await asyncio.gather(*(loop.run_in_executor(pool, _hash_chunk, c) for c in chunks))
        except BrokenProcessPool:
            # A broken executor never recovers: drop it, or every later bulk fails. Only this one —
            # a concurrent caller may have replaced it already.
            if self._pool is pool:
                self._pool = None
                _kill_workers(pool)  # before shutdown, which forgets the processes
                pool.shutdown(wait=False, cancel_futures=True)
            raise

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None


def _kill_workers(pool: ProcessPoolExecutor) -> None:
    """SIGKILL the broken executor's processes. Its own thread SIGTERMs the processes it knows when it
    finds the pool broken and then joins them — yet once a worker was seen alive after that, blocked on
    the call queue's lock, and that join held the interpreter's exit (a run of tests/auth passed and
    never ended; a service would hang so on shutdown). How it outlived the SIGTERM is not known; killed
    again here, whatever the executor did. ``_processes``: no public way before Python 3.14."""
    for process in list((getattr(pool, "_processes", None) or {}).values()):
        if process.is_alive():
            process.kill()
