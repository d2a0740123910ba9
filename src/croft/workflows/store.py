"""Workflow state, durable: SQLite (WAL) by default, PostgreSQL when `database_url` says so, both
through SQLAlchemy Core, so one code path serves both.

States, for a workflow and for each of its actions:
    pending -> running -> success | failed | timeout | cancelled
A restarted server loses nothing: an action that was running is served again to the agent
that asks for its next action (actions are written to be re-run: they rewrite what they write).
"""

from __future__ import annotations

import contextlib
import json
import secrets
import time
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from croft.errors import CroftError
from croft.workflows.template import WorkflowSpec


class Status(StrEnum):
    """A workflow's or an action's state."""

    PENDING = "pending"
    RUNNING = "running"
    SUCCESS = "success"
    FAILED = "failed"
    TIMEOUT = "timeout"
    CANCELLED = "cancelled"


FINISHED = frozenset({Status.SUCCESS, Status.FAILED, Status.TIMEOUT, Status.CANCELLED})
ACTIVE = frozenset({Status.PENDING, Status.RUNNING})
# What an agent may say of the action it runs: a heartbeat, or how it ended.
REPORTABLE = frozenset({Status.RUNNING, Status.SUCCESS, Status.FAILED, Status.TIMEOUT})
# An action's output is kept up to this much; past it, one line says it was cut.
LOG_LIMIT = 4 << 20
# Boot events kept per MAC (the newest): a machine that fails to boot in a loop cannot fill the disk.
EVENTS_PER_MAC = 50
# An agent enforces each action's timeout itself; the server steps in this much later, for an
# agent that died or lost its network.
SERVER_GRACE_SECONDS = 30

metadata = sa.MetaData()
workflows = sa.Table(
    "workflows",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("machine", sa.String(64), nullable=False, index=True),
    sa.Column("template", sa.String(128), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("token", sa.String(64), nullable=False, unique=True),
    sa.Column("global_timeout", sa.Integer, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("started_at", sa.Float),
    sa.Column("finished_at", sa.Float),
    sa.Column("message", sa.Text, nullable=False, default=""),
    # The address the workflow's credential is bound to: the machine that boots it.
    sa.Column("address", sa.String(45)),
)
actions = sa.Table(
    "actions",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("workflow_id", sa.Integer, sa.ForeignKey("workflows.id"), nullable=False, index=True),
    sa.Column("position", sa.Integer, nullable=False),
    sa.Column("task", sa.String(128), nullable=False),
    sa.Column("name", sa.String(128), nullable=False),
    sa.Column("action", sa.String(64)),
    sa.Column("command", sa.Text),
    sa.Column("env", sa.Text, nullable=False),
    sa.Column("timeout", sa.Integer, nullable=False),
    sa.Column("on_failure", sa.String(16), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("started_at", sa.Float),
    sa.Column("finished_at", sa.Float),
    sa.Column("exit_status", sa.Integer),
    sa.Column("message", sa.Text, nullable=False, default=""),
    sa.Column("log_bytes", sa.Integer, nullable=False, default=0),
)
logs = sa.Table(
    "logs",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("action_id", sa.Integer, sa.ForeignKey("actions.id"), nullable=False, index=True),
    sa.Column("at", sa.Float, nullable=False),
    sa.Column("data", sa.Text, nullable=False),
)
boot_events = sa.Table(
    "boot_events",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("mac", sa.String(17), nullable=False, index=True),
    sa.Column("at", sa.Float, nullable=False),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("message", sa.Text, nullable=False),
)


@dataclass(frozen=True)
class Action:
    id: int
    workflow_id: int
    position: int
    task: str
    name: str
    action: str | None
    command: str | None
    env: dict[str, str]
    timeout: int
    on_failure: str
    status: Status
    started_at: float | None
    finished_at: float | None
    exit_status: int | None
    message: str

    def public(self) -> dict[str, Any]:
        return {key: str(value) if key == "status" else value for key, value in self.__dict__.items()}


@dataclass(frozen=True)
class Workflow:
    id: int
    machine: str
    template: str
    status: Status
    token: str
    global_timeout: int
    created_at: float
    started_at: float | None
    finished_at: float | None
    message: str
    address: str | None
    actions: tuple[Action, ...] = ()

    def public(self) -> dict[str, Any]:
        """As the admin API returns it (the token stays on the server)."""
        data = {key: value for key, value in self.__dict__.items() if key not in ("token", "actions")}
        data["status"] = str(self.status)
        data["actions"] = [action.public() for action in self.actions]
        return data


class Conflict(CroftError):
    """A request the workflow's state does not allow (a report for an action not handed out, a
    log after the workflow ended): refused, nothing changes."""


def database_url(url: str | None, state_dir: Path) -> str:
    if url:
        return url
    state_dir.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{state_dir / 'workflows.db'}"


class WorkflowStore:
    def __init__(self, url: str) -> None:
        if url.startswith("postgresql://"):
            url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
        self.engine = sa.create_engine(url)
        if self.engine.dialect.name == "sqlite":
            sa.event.listen(self.engine, "connect", _sqlite_pragmas)
        try:
            metadata.create_all(self.engine)
            _add_missing_columns(self.engine)
        except sa.exc.OperationalError as error:
            raise CroftError(f"cannot open the workflow database {url}: {error.orig}") from None

    def close(self) -> None:
        self.engine.dispose()

    # -- workflows ---------------------------------------------------------------------------

    def create(self, machine: str, template: str, spec: WorkflowSpec) -> Workflow:
        with self.engine.begin() as db:
            if db.execute(
                sa.select(workflows.c.id).where(
                    workflows.c.machine == machine, workflows.c.status.in_(ACTIVE)
                )
            ).first():
                raise CroftError(f"{machine} already has a workflow pending or running; cancel it first")
            inserted = db.execute(
                workflows.insert().values(
                    machine=machine,
                    template=template,
                    status=Status.PENDING,
                    token=secrets.token_hex(16),
                    global_timeout=spec.global_timeout,
                    created_at=time.time(),
                    message="",
                )
            ).inserted_primary_key
            assert inserted is not None
            workflow_id = inserted[0]
            position = 0
            for task in spec.tasks:
                for action in task.actions:
                    db.execute(
                        actions.insert().values(
                            workflow_id=workflow_id,
                            position=position,
                            task=task.name,
                            name=action.name,
                            action=action.action,
                            command=action.command,
                            env=json.dumps(action.env),
                            timeout=action.timeout,
                            on_failure=action.on_failure,
                            status=Status.PENDING,
                            message="",
                            log_bytes=0,
                        )
                    )
                    position += 1
        return self.get(workflow_id)

    def get(self, workflow_id: int) -> Workflow:
        with self.engine.connect() as db:
            row = db.execute(sa.select(workflows).where(workflows.c.id == workflow_id)).first()
            if row is None:
                raise CroftError(f"no workflow {workflow_id}")
            rows = db.execute(
                sa.select(actions).where(actions.c.workflow_id == workflow_id).order_by(actions.c.position)
            ).all()
        return _workflow(row, tuple(_action(a) for a in rows))

    def all(self, machine: str | None = None) -> list[Workflow]:
        query = sa.select(workflows).order_by(workflows.c.id)
        if machine is not None:
            query = query.where(workflows.c.machine == machine)
        with self.engine.connect() as db:
            return [_workflow(row, ()) for row in db.execute(query).all()]

    def active(self) -> dict[str, Workflow]:
        """The pending or running workflow of each machine that has one."""
        with self.engine.connect() as db:
            rows = db.execute(sa.select(workflows).where(workflows.c.status.in_(ACTIVE))).all()
        return {row.machine: _workflow(row, ()) for row in rows}

    def by_token(self, token: str) -> Workflow | None:
        with self.engine.connect() as db:
            row = db.execute(sa.select(workflows).where(workflows.c.token == token)).first()
        return _workflow(row, ()) if row is not None else None

    def cancel(self, workflow_id: int) -> Workflow:
        now = time.time()
        with self.engine.begin() as db:
            updated = db.execute(
                workflows.update()
                .where(workflows.c.id == workflow_id, workflows.c.status.in_(ACTIVE))
                .values(status=Status.CANCELLED, finished_at=now, message="cancelled")
            ).rowcount
            if updated:
                db.execute(
                    actions.update()
                    .where(actions.c.workflow_id == workflow_id, actions.c.status.in_(ACTIVE))
                    .values(status=Status.CANCELLED, finished_at=now)
                )
        return self.get(workflow_id)

    def retry(self, workflow_id: int) -> Workflow:
        """Run a finished, unsuccessful workflow again from its first unsuccessful action."""
        workflow = self.get(workflow_id)
        if workflow.status not in (Status.FAILED, Status.TIMEOUT, Status.CANCELLED):
            raise CroftError(
                f"workflow {workflow_id} is {workflow.status}: only a failed, timed out or "
                "cancelled workflow can be retried"
            )
        first = next(a.position for a in workflow.actions if a.status != Status.SUCCESS)
        with self.engine.begin() as db:
            if db.execute(
                sa.select(workflows.c.id).where(
                    workflows.c.machine == workflow.machine, workflows.c.status.in_(ACTIVE)
                )
            ).first():
                raise CroftError(f"{workflow.machine} already has a workflow pending or running")
            db.execute(
                actions.update()
                .where(actions.c.workflow_id == workflow_id, actions.c.position >= first)
                .values(
                    status=Status.PENDING, started_at=None, finished_at=None, exit_status=None, message=""
                )
            )
            db.execute(
                workflows.update()
                .where(workflows.c.id == workflow_id)
                .values(status=Status.PENDING, finished_at=None, message="")
            )
        return self.get(workflow_id)

    # -- what the agent drives ---------------------------------------------------------------

    def next_action(self, workflow_id: int) -> Action | None:
        """The action the agent runs next, marked running (one already running is served again,
        after a restart of the agent or of the server); None when the workflow is finished."""
        now = time.time()
        with self.engine.begin() as db:
            workflow = db.execute(sa.select(workflows).where(workflows.c.id == workflow_id)).first()
            if workflow is None or workflow.status in FINISHED:
                return None
            row = db.execute(
                sa.select(actions)
                .where(actions.c.workflow_id == workflow_id, actions.c.status.in_(ACTIVE))
                .order_by(actions.c.position)
                .limit(1)
            ).first()
            if row is None:
                return None
            if workflow.status == Status.PENDING:
                db.execute(
                    workflows.update()
                    .where(workflows.c.id == workflow_id)
                    .values(status=Status.RUNNING, started_at=now)
                )
            if row.status == Status.PENDING:
                db.execute(
                    actions.update()
                    .where(actions.c.id == row.id)
                    .values(status=Status.RUNNING, started_at=now)
                )
                row = db.execute(sa.select(actions).where(actions.c.id == row.id)).first()
        return _action(row)

    def report(
        self, workflow_id: int, action_id: int, status: Status, exit_status: int | None, message: str
    ) -> Workflow:
        """The agent's word on the action it was handed: running (a heartbeat) or how it ended.
        Only the running action can be reported on, once: a report for an action not handed out
        yet, or for one that already ended, is a Conflict and changes nothing. The workflow
        succeeds when its last action has ended, never while one is still pending or running."""
        if status not in REPORTABLE:
            raise CroftError(f"unknown action status {status!r}")
        now = time.time()
        with self.engine.begin() as db:
            row = db.execute(
                sa.select(actions).where(actions.c.id == action_id, actions.c.workflow_id == workflow_id)
            ).first()
            if row is None:
                raise CroftError(f"workflow {workflow_id} has no action {action_id}")
            if row.status != Status.RUNNING:
                raise Conflict(f"action {action_id} is {row.status}, not running: nothing to report")
            if status == Status.RUNNING:
                return self.get(workflow_id)  # a heartbeat
            db.execute(
                actions.update()
                .where(actions.c.id == action_id)
                .values(status=status, finished_at=now, exit_status=exit_status, message=message)
            )
            ends = status != Status.SUCCESS and row.on_failure == "fail"
            remaining = db.execute(
                sa.select(sa.func.count()).where(
                    actions.c.workflow_id == workflow_id, actions.c.status.in_(ACTIVE)
                )
            ).scalar_one()
            if ends:
                db.execute(
                    actions.update()
                    .where(actions.c.workflow_id == workflow_id, actions.c.status.in_(ACTIVE))
                    .values(status=Status.CANCELLED, finished_at=now)
                )
                outcome = f"{row.task}/{row.name}: {status}" + (f": {message}" if message else "")
                db.execute(
                    workflows.update()
                    .where(workflows.c.id == workflow_id)
                    .values(status=status, finished_at=now, message=outcome)
                )
            elif remaining == 0:
                db.execute(
                    workflows.update()
                    .where(workflows.c.id == workflow_id)
                    .values(status=Status.SUCCESS, finished_at=now)
                )
        return self.get(workflow_id)

    def append_log(self, workflow_id: int, action_id: int, data: str) -> None:
        """Output of the running action; past LOG_LIMIT bytes, one line says the rest was cut."""
        with self.engine.begin() as db:
            row = db.execute(
                sa.select(actions.c.status, actions.c.log_bytes).where(
                    actions.c.id == action_id, actions.c.workflow_id == workflow_id
                )
            ).first()
            if row is None:
                raise CroftError(f"workflow {workflow_id} has no action {action_id}")
            if row.status != Status.RUNNING:
                raise Conflict(f"action {action_id} is {row.status}, not running: its log is closed")
            size = len(data.encode())
            if row.log_bytes > LOG_LIMIT:
                return  # cut already
            if row.log_bytes + size > LOG_LIMIT:
                data = f"\n[croft serve: output past {LOG_LIMIT >> 20} MiB not kept]\n"
                size = LOG_LIMIT + 1 - row.log_bytes
            db.execute(logs.insert().values(action_id=action_id, at=time.time(), data=data))
            db.execute(
                actions.update().where(actions.c.id == action_id).values(log_bytes=actions.c.log_bytes + size)
            )

    def bind(self, workflow_id: int, address: str) -> bool:
        """Bind the workflow's credential to `address` unless it is bound already; whether
        `address` is the one it is bound to."""
        with self.engine.begin() as db:
            db.execute(
                workflows.update()
                .where(workflows.c.id == workflow_id, workflows.c.address.is_(None))
                .values(address=address)
            )
            bound = db.execute(sa.select(workflows.c.address).where(workflows.c.id == workflow_id)).scalar()
        return bound == address

    def logs(self, workflow_id: int, after: int = 0) -> list[tuple[int, int, str]]:
        """(log id, action id, text) of the workflow's output after log id `after`."""
        query = (
            sa.select(logs.c.id, logs.c.action_id, logs.c.data)
            .join(actions, actions.c.id == logs.c.action_id)
            .where(actions.c.workflow_id == workflow_id, logs.c.id > after)
            .order_by(logs.c.id)
        )
        with self.engine.connect() as db:
            return [(row.id, row.action_id, row.data) for row in db.execute(query).all()]

    def expire(self) -> list[int]:
        """End what ran out of time on the server's clock; returns the workflows that ended."""
        now = time.time()
        ended = []
        with self.engine.connect() as db:
            running = db.execute(sa.select(actions).where(actions.c.status == Status.RUNNING)).all()
            overdue_workflows = db.execute(
                sa.select(workflows).where(workflows.c.status == Status.RUNNING)
            ).all()
        for row in running:
            if row.started_at is not None and now > row.started_at + row.timeout + SERVER_GRACE_SECONDS:
                with contextlib.suppress(Conflict):  # the agent's own report came first
                    self.report(
                        row.workflow_id,
                        row.id,
                        Status.TIMEOUT,
                        None,
                        f"no word from the agent in {row.timeout} s",
                    )
                ended.append(row.workflow_id)
        for workflow in overdue_workflows:
            if workflow.started_at is not None and now > workflow.started_at + workflow.global_timeout:
                with self.engine.begin() as db:
                    db.execute(
                        actions.update()
                        .where(actions.c.workflow_id == workflow.id, actions.c.status.in_(ACTIVE))
                        .values(status=Status.TIMEOUT, finished_at=now)
                    )
                    db.execute(
                        workflows.update()
                        .where(workflows.c.id == workflow.id)
                        .values(
                            status=Status.TIMEOUT,
                            finished_at=now,
                            message=f"global timeout ({workflow.global_timeout} s)",
                        )
                    )
                ended.append(workflow.id)
        return ended

    # -- boot events -------------------------------------------------------------------------

    def add_boot_event(self, mac: str, kind: str, message: str) -> None:
        """Record an event, keeping the newest EVENTS_PER_MAC of the MAC's."""
        with self.engine.begin() as db:
            db.execute(boot_events.insert().values(mac=mac, at=time.time(), kind=kind, message=message))
            # The newest event past the ones kept, and all older ones, go.
            past = db.execute(
                sa.select(boot_events.c.id)
                .where(boot_events.c.mac == mac)
                .order_by(boot_events.c.id.desc())
                .offset(EVENTS_PER_MAC)
                .limit(1)
            ).scalar()
            if past is not None:
                db.execute(boot_events.delete().where(boot_events.c.mac == mac, boot_events.c.id <= past))

    def prune(self, keep_seconds: float) -> int:
        """Forget workflows that ended more than `keep_seconds` ago (their actions and output)
        and boot events as old; returns how many workflows went."""
        cutoff = time.time() - keep_seconds
        with self.engine.begin() as db:
            old = sa.select(workflows.c.id).where(
                workflows.c.status.in_(FINISHED), workflows.c.finished_at < cutoff
            )
            old_actions = sa.select(actions.c.id).where(actions.c.workflow_id.in_(old))
            db.execute(logs.delete().where(logs.c.action_id.in_(old_actions)))
            db.execute(actions.delete().where(actions.c.workflow_id.in_(old)))
            gone = db.execute(workflows.delete().where(workflows.c.id.in_(old))).rowcount
            db.execute(boot_events.delete().where(boot_events.c.at < cutoff))
        return int(gone)

    def boot_events(self, mac: str) -> list[tuple[float, str, str]]:
        with self.engine.connect() as db:
            rows = db.execute(
                sa.select(boot_events).where(boot_events.c.mac == mac).order_by(boot_events.c.id)
            ).all()
        return [(row.at, row.kind, row.message) for row in rows]


def _sqlite_pragmas(connection: Any, _record: Any) -> None:
    cursor = connection.cursor()
    # WAL: readers never wait for the writer; synchronous=NORMAL is durable across a crash of
    # the process (not of the machine), which is what a restarted server needs.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.close()


def _add_missing_columns(engine: sa.Engine) -> None:
    """Columns added since a database was made (a croft upgrade keeps its state)."""
    inspector = sa.inspect(engine)
    for table in (workflows, actions):
        present = {column["name"] for column in inspector.get_columns(table.name)}
        for column in table.columns:
            if column.name not in present:
                kind = column.type.compile(engine.dialect)
                default = " NOT NULL DEFAULT 0" if column.name == "log_bytes" else ""
                with engine.begin() as db:
                    db.execute(sa.text(f"ALTER TABLE {table.name} ADD COLUMN {column.name} {kind}{default}"))


def _workflow(row: Any, action_rows: tuple[Action, ...]) -> Workflow:
    return Workflow(
        row.id, row.machine, row.template, Status(row.status), row.token, row.global_timeout,
        row.created_at, row.started_at, row.finished_at, row.message, row.address, action_rows,
    )  # fmt: skip


def _action(row: Any) -> Action:
    return Action(
        row.id, row.workflow_id, row.position, row.task, row.name, row.action, row.command,
        json.loads(row.env), row.timeout, row.on_failure, Status(row.status), row.started_at,
        row.finished_at, row.exit_status, row.message,
    )  # fmt: skip
