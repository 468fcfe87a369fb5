"""Work that time makes due: SLA breaches, and MQLs that waited for a member to be free.

`run_round` is what one tick does; `Scheduler` runs it on a background thread inside each
`qualify serve` worker, and `qualify worker` runs it in a process of its own. Several of
them at once are safe: each round is one writer transaction, and a breach is only recorded
for an MQL whose current assignment has none yet.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import Engine

from qualify.errors import NoActiveModel
from qualify.service.rescore import requalify_recycled
from qualify.service.routing import check_sla, route_pending

__all__ = ["RoundReport", "Scheduler", "run_round"]

log = logging.getLogger("qualify.scheduler")


@dataclass(frozen=True, slots=True)
class RoundReport:
    breached: int = 0
    reassigned: int = 0
    routed: int = 0
    requalified: int = 0  # recycled leads whose wait ended and whose criteria hold again


def run_round(engine: Engine, *, clock: Callable[[], float] = time.time) -> RoundReport:
    """One round: record SLA breaches (and re-route them), route waiting MQLs, and let
    recycled leads whose wait ended qualify again."""
    try:
        sla = check_sla(engine, clock=clock)
        routed = route_pending(engine, clock=clock)
        requalified = requalify_recycled(engine, now=clock()).new_mqls
    except NoActiveModel:
        return RoundReport()  # nothing is scored yet, so nothing is due
    return RoundReport(sla.breached, sla.reassigned, routed, requalified)


class Scheduler:
    """Runs `run_round` every `interval` seconds on a daemon thread until `stop`."""

    def __init__(
        self,
        engine: Engine,
        interval: float,
        after_round: Callable[[], None] | None = None,
        on_report: Callable[[RoundReport], None] | None = None,
    ) -> None:
        self.engine = engine
        self.interval = interval
        self.after_round = after_round
        self.on_report = on_report
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="qualify-scheduler", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                report = run_round(self.engine)
                if self.after_round is not None:
                    self.after_round()
            except Exception:  # a failed round is logged and tried again next time
                log.exception("scheduled round failed")
                continue
            if self.on_report is not None:
                self.on_report(report)
            if report.breached or report.routed or report.requalified:
                log.info(
                    "%d SLA breaches (%d reassigned), %d waiting MQLs routed, %d requalified",
                    report.breached,
                    report.reassigned,
                    report.routed,
                    report.requalified,
                )
