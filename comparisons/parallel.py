"""Independent units of work (the cases of a report, the replications of a study) as Dask tasks.

A :class:`Runner` maps a function over a list of units and returns the results in the order of
the units, whatever order they finished in. Every unit carries its own seed (derived from the
root seed and the unit, never from the order of execution), so a parallel run gives the same
results as a serial one.

Where the units run:

* by default on a ``distributed.LocalCluster`` started for the call: one worker process per
  core (at most one per unit), one thread each;
* ``scheduler="tcp://host:8786"``: on a running Dask cluster (its workers need this package and
  its data sets installed);
* ``serial=True``: in this process, one after another, without Dask (for debugging and for
  timing the serial baseline).

>>> with Runner(workers=2) as run:                            # doctest: +SKIP
...     squares = run.map(pow, [(2, 2), (3, 2)])              # [4, 9]
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Callable, Sequence
from typing import Any


def default_workers(n_units: int | None = None) -> int:
    """One worker per core (``os.process_cpu_count``), at most one per unit."""
    cores = (os.process_cpu_count() if hasattr(os, "process_cpu_count") else os.cpu_count()) or 1
    return max(1, min(cores, n_units) if n_units else cores)


class Runner:
    """Run units of work on Dask (a local cluster by default) or serially.

    Parameters
    ----------
    scheduler : str, optional
        Address of a running Dask scheduler; None starts a ``LocalCluster``.
    workers : int, optional
        Worker processes of the local cluster (default :func:`default_workers`).
    serial : bool
        Run in this process without Dask.
    progress_topic : str
        Dask event topic on which tasks may report progress (see :func:`report_progress`).
    """

    def __init__(self, scheduler: str | None = None, workers: int | None = None, *,
                 serial: bool = False):
        if workers is not None and int(workers) < 1:
            raise ValueError(f"workers must be a positive integer; received {workers!r}.")
        if serial and scheduler is not None:
            raise ValueError("serial=True runs in this process; it cannot use a scheduler "
                             f"(received scheduler={scheduler!r}).")
        self.scheduler, self.workers, self.serial = scheduler, workers, serial
        self._client = self._cluster = None

    # --- lifetime -----------------------------------------------------------------------
    def __enter__(self) -> Runner:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
        if self._cluster is not None:
            self._cluster.close()
        self._client = self._cluster = None

    def client(self, n_units: int | None = None):
        """The Dask client (started on first use)."""
        if self._client is None:
            from distributed import Client, LocalCluster

            if self.scheduler is not None:
                try:
                    self._client = Client(self.scheduler, timeout="5s")
                except OSError as err:
                    raise ValueError(f"cannot reach the Dask scheduler at {self.scheduler!r}: "
                                     f"{err}") from None
            else:
                n = self.workers or default_workers(n_units)
                # No dashboard; the scheduler's own HTTP server (health, metrics) on a free port
                # instead of 8787, so two clusters at once (two commands, two test workers) do
                # not warn that the port is taken.
                self._cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                                             dashboard_address=None,
                                             scheduler_kwargs={"dashboard_address": ":0"},
                                             silence_logs=logging.ERROR)
                self._client = Client(self._cluster)
        return self._client

    @property
    def description(self) -> str:
        if self.serial:
            return "serially in this process"
        if self.scheduler is not None:
            return f"on the Dask cluster at {self.scheduler}"
        n = f"{self.workers} worker processes" if self.workers else "a worker process per core"
        return f"on a local Dask cluster ({n})"

    # --- work ---------------------------------------------------------------------------
    def map(self, fn: Callable, units: Sequence, *, progress: Callable | None = None,
            events: Callable[[str], Any] | None = None, priorities: Sequence | None = None
            ) -> list:
        """``[fn(*unit) for unit in units]`` (a unit that is not a tuple is one argument).

        ``progress(index, result)`` is called as each unit finishes (in finishing order);
        ``events(message)`` receives what tasks report with :func:`report_progress`;
        ``priorities`` (higher first) lets the longest units start first, so that a long one
        does not run alone at the end. None of these changes any result.
        """
        units = [u if isinstance(u, tuple) else (u,) for u in units]
        if not units:
            return []
        if self.serial:
            out = []
            for i, u in enumerate(units):
                out.append(fn(*u))
                if progress is not None:
                    progress(i, out[-1])
            return out
        from distributed import as_completed

        client = self.client(len(units))
        if events is not None:
            client.subscribe_topic(TOPIC, lambda event: events(event[1]))
        try:
            batch = uuid.uuid4().hex  # keys unique to this call: never another call's result
            prio = list(priorities) if priorities is not None else [0] * len(units)
            # submitted highest priority first: a free worker takes a task as soon as it
            # arrives, before later submissions could outrank it
            order = sorted(range(len(units)), key=lambda i: -prio[i])
            futures = {i: client.submit(fn, *units[i], pure=False, key=f"unit-{batch}-{i}",
                                        priority=prio[i]) for i in order}
            index = {f.key: i for i, f in futures.items()}
            results: list = [None] * len(units)
            for future in as_completed(list(futures.values())):
                i = index[future.key]
                results[i] = future.result()  # re-raises a task's exception here
                if progress is not None:
                    progress(i, results[i])
        finally:
            if events is not None:
                client.unsubscribe_topic(TOPIC)
        return results


#: the Dask event topic tasks report progress on
TOPIC = "bayes-crosscheck-progress"


def report_progress(message: str) -> None:
    """From inside a task: send ``message`` to the client's progress display (no-op outside
    a Dask worker)."""
    try:
        from distributed import get_worker

        get_worker().log_event(TOPIC, message)
    except (ImportError, ValueError):
        pass
