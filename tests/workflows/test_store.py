"""The workflow state machine, the same on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest

from croft.errors import CroftError
from croft.workflows import store as store_module
from croft.workflows.store import Status, WorkflowStore
from croft.workflows.template import ActionSpec, TaskSpec, WorkflowSpec


def spec(*actions: ActionSpec, global_timeout: int = 600) -> WorkflowSpec:
    return WorkflowSpec("test", (TaskSpec("task", actions),), global_timeout)


THREE = spec(
    ActionSpec("one", command="true"),
    ActionSpec("two", command="false", on_failure="continue"),
    ActionSpec("three", action="reboot", env={"A": "b"}),
)


def test_a_workflow_runs_its_actions_in_order_to_success(database_url: str) -> None:
    store = WorkflowStore(database_url)
    workflow = store.create("m1", "test", THREE)
    assert workflow.status == "pending" and [a.status for a in workflow.actions] == ["pending"] * 3
    first = store.next_action(workflow.id)
    assert first is not None and first.name == "one" and store.get(workflow.id).status == "running"
    store.append_log(workflow.id, first.id, "hello\n")
    store.report(workflow.id, first.id, Status.SUCCESS, 0, "")
    second = store.next_action(workflow.id)
    assert second is not None and second.name == "two"
    store.report(workflow.id, second.id, Status.FAILED, 1, "no")  # on_failure = continue
    third = store.next_action(workflow.id)
    assert third is not None and third.env == {"A": "b"}
    done = store.report(workflow.id, third.id, Status.SUCCESS, 0, "")
    assert done.status == "success" and [a.status for a in done.actions] == ["success", "failed", "success"]
    assert store.next_action(workflow.id) is None
    assert store.logs(workflow.id) == [(1, first.id, "hello\n")]
    assert store.active() == {}


def test_a_failure_ends_the_workflow_and_retry_resumes_it(database_url: str) -> None:
    store = WorkflowStore(database_url)
    workflow = store.create("m1", "test", THREE)
    first = store.next_action(workflow.id)
    assert first is not None
    failed = store.report(workflow.id, first.id, Status.FAILED, 3, "disk missing")
    assert failed.status == "failed" and failed.message == "task/one: failed: disk missing"
    assert [a.status for a in failed.actions] == ["failed", "cancelled", "cancelled"]
    retried = store.retry(workflow.id)
    assert retried.status == "pending" and [a.status for a in retried.actions] == ["pending"] * 3
    with pytest.raises(CroftError, match="only a failed"):
        store.retry(workflow.id)


def test_the_running_action_is_served_again_after_a_restart(database_url: str) -> None:
    store = WorkflowStore(database_url)
    workflow = store.create("m1", "test", THREE)
    running = store.next_action(workflow.id)
    store.close()
    reopened = WorkflowStore(database_url)  # a restarted server
    assert reopened.next_action(workflow.id) == running
    assert reopened.by_token(workflow.token) is not None


def test_one_active_workflow_per_machine_and_cancel(database_url: str) -> None:
    store = WorkflowStore(database_url)
    workflow = store.create("m1", "test", THREE)
    with pytest.raises(CroftError, match="already has a workflow"):
        store.create("m1", "test", THREE)
    cancelled = store.cancel(workflow.id)
    assert cancelled.status == "cancelled" and {a.status for a in cancelled.actions} == {"cancelled"}
    assert store.next_action(workflow.id) is None
    store.create("m1", "test", THREE)


def test_the_server_times_out_what_the_agent_stopped_reporting(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store_module, "SERVER_GRACE_SECONDS", -10)
    store = WorkflowStore(database_url)
    workflow = store.create("m1", "test", spec(ActionSpec("stuck", command="sleep 99", timeout=1)))
    assert store.next_action(workflow.id) is not None
    assert store.expire() == [workflow.id]
    ended = store.get(workflow.id)
    assert ended.status == "timeout" and ended.actions[0].status == "timeout"


def test_the_global_timeout(database_url: str) -> None:
    store = WorkflowStore(database_url)
    workflow = store.create("m1", "test", spec(ActionSpec("a", command="true"), global_timeout=-1))
    assert store.next_action(workflow.id) is not None
    assert store.expire() == [workflow.id]
    assert store.get(workflow.id).message == "global timeout (-1 s)"
