"""One batch of activations run in a thread of its own while the caller rolls another tier.

The worker and beat take a new release alongside the web tier's batches (see
smship.steps.tiers): their restart and watch, seconds of Celery start-up, then
cost no time of their own. The batch is announced when it starts and
judged when it is waited for, both from the caller's thread, so its lines never
land inside another batch's.
"""

from __future__ import annotations

import threading
import time

from smship.ahead import waited_through_ctrl_c
from smship.context import EnvContext
from smship.notices import notify_until_done
from smship.remote import AgentsAhead
from smship.remote import client as agent
from smship.ssh import WAIT_NOTICE_EVERY, Fleet, Target
from smship.steps.roll import Activations, RollResult, judge


class Alongside:
    # Once the caller waits for the batch, which hosts it still waits for is said this often (seconds
    # since the batch began): a worker slot a deploy before asked to stop is waited for (its warm
    # shutdown lasts as long as the tasks it runs) before the new release starts in it.
    NOTICE_EVERY = WAIT_NOTICE_EVERY

    def __init__(self, ctx: EnvContext, fleet: Fleet, targets: dict[str, Target], names: list[str],
                 request_for: Activations, title: str):
        self.ctx, self.fleet, self.targets, self.names = ctx, fleet, targets, names
        self.request_for, self.title = request_for, title
        self._thread: threading.Thread | None = None
        self._ended = threading.Event()
        self._answers = None
        self._error: BaseException | None = None
        self._started = 0.0
        self._result: RollResult | None = None
        self._answered: set[str] = set()
        self._ahead: AgentsAhead | None = None

    def begin_agents(self) -> None:
        """Start the batch's agents up (sudo, interpreter, imports) now, while the caller's own batch runs:
        the batch then begins with its requests. Agents the batch never asks exit, having done nothing."""
        if self._ahead is None and self._thread is None and self.names:
            self._ahead = AgentsAhead(self.fleet, [self.targets[name] for name in self.names])

    def adopt_agents(self, ahead: AgentsAhead | None) -> None:
        """The batch's agents, begun by the caller (see smship.steps.tiers.TiersAhead)."""
        if self._ahead is None and self._thread is None:
            self._ahead = ahead
        elif ahead is not None:
            ahead.cancel()

    def _cancel_agents(self) -> None:
        if self._ahead is not None:
            self._ahead.cancel()

    def start(self) -> None:
        """Begin the batch (once; later calls do nothing)."""
        if self._thread is not None or not self.names:
            return
        self.ctx.reporter.step(f"{self.title}: batch 1/1: {', '.join(self.names)}")
        self._started = time.monotonic()
        # Not a daemon: should smship be stopped, the interpreter still waits for the hosts' answers.
        self._thread = threading.Thread(target=self._run, name="smship-alongside")
        self._thread.start()

    def _run(self) -> None:
        def activate(target):
            try:
                return agent.ask(self.fleet, target, self.request_for(target.name), self._ahead)
            finally:
                self._answered.add(target.name)
        try:
            self._answers = self.fleet.map(activate, [self.targets[name] for name in self.names])
        except BaseException as exc:   # handed to the caller's thread by wait()
            self._error = exc
        finally:
            self._cancel_agents()
            self._ended.set()

    def _join(self) -> None:
        """Until the batch ends, saying every NOTICE_EVERY seconds which hosts it still waits for. On an
        Event, not the thread's join, which a Ctrl-C can leave believing a running thread ended (see
        smship.ahead.Ahead)."""
        notify_until_done(self._ended.wait, lambda: [n for n in self.names if n not in self._answered],
                          lambda hosts, seconds: self.ctx.reporter.waiting(
                              self.title, hosts, seconds, "the idle worker slot still finishes the tasks it ran before, "
                              f"up to worker.stop_timeout: {self.ctx.env.worker.stop_timeout}s"),
                          self._started, self.NOTICE_EVERY)

    def failed(self) -> bool:
        """Whether the batch has ended and a host of it failed (it does not wait)."""
        if self._thread is None or not self._ended.is_set():
            return False
        return not self.wait().ok

    def wait(self) -> RollResult | None:
        """The batch's outcome once every host answered, each said once; None when it never began.

        Ctrl-C while it runs is held until then, as a roll's batch holds it:
        every host ends its activation (reverting itself on failure) or never
        began it.
        """
        if self._thread is None:
            self._cancel_agents()
            return None
        if self._result is not None:
            return self._result
        waiting = (f"interrupted: waiting for {', '.join(self.names)} to finish activating "
                   "(Ctrl-C again to stop waiting)")
        interrupted = waited_through_ctrl_c(self._join, lambda: self.ctx.reporter.warn(waiting))
        if self._error is not None:
            raise self._error
        self._result = RollResult()
        judge(self.ctx.reporter, self.title, self.names, self._answers, self._started, self._result)
        if interrupted:
            raise KeyboardInterrupt
        return self._result
