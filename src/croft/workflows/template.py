"""Workflow templates: workflows/<name>.yaml, rendered per machine with Jinja2, then checked.

```yaml
name: install
global_timeout: 1800
tasks:
  - name: install
    actions:
      - name: stream the image
        action: image-to-disk
        timeout: 600
        env:
          IMAGE_URL: "{{ images.debian['raw.zst'].url }}"
          DEST_DISK: "{{ hardware.disks[0] }}"
```
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

from croft.agent.actions import ACTIONS
from croft.errors import Problem, SiteError, template_syntax_hint
from croft.site.model import STRICT, Machine, Site

# The actions croft's agent runs, by the agent's own list; `command:` runs anything else.
BUILTIN_ACTIONS = tuple(ACTIONS)


@dataclass(frozen=True)
class ActionSpec:
    __pydantic_config__: ClassVar[dict[str, Any]] = STRICT
    name: str
    action: str | None = None
    """A built-in action (see docs/workflows.md)."""
    command: str | None = None
    """Or a shell command run in the netboot environment."""
    env: dict[str, str] = field(default_factory=dict)
    timeout: int = 300
    """Seconds; past it the action is killed and ends `timeout`."""
    on_failure: Literal["fail", "continue"] = "fail"


@dataclass(frozen=True)
class TaskSpec:
    __pydantic_config__: ClassVar[dict[str, Any]] = STRICT
    name: str
    actions: tuple[ActionSpec, ...]


@dataclass(frozen=True)
class WorkflowSpec:
    __pydantic_config__: ClassVar[dict[str, Any]] = STRICT
    name: str
    tasks: tuple[TaskSpec, ...]
    global_timeout: int = 3600


# A template is a name inside workflows/, never a path.
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$")


def template_file(site: Site, name: str) -> Path:
    if not _NAME.match(name):
        raise SiteError(
            [
                Problem(
                    site.root / "workflows",
                    f"{name[:80]!r} is not a template name",
                    hint="name a file workflows/NAME.yaml by its NAME (letters, digits, - and _)",
                )
            ]
        )
    return site.root / "workflows" / f"{name}.yaml"


def templates(site: Site) -> list[str]:
    return sorted(path.stem for path in (site.root / "workflows").glob("*.yaml"))


def render(site: Site, machine: Machine, name: str, context: dict[str, Any]) -> WorkflowSpec:
    """The template `name` for `machine`; raises SiteError naming the file and line."""
    import jinja2
    import jinja2.sandbox
    import yaml
    from pydantic import TypeAdapter, ValidationError

    path = template_file(site, name)
    if not path.exists():
        known = ", ".join(templates(site)) or "none"
        raise SiteError([Problem(path, f"no workflow template {name!r}", hint=f"templates: {known}")])
    # Sandboxed: a template reaches only the variables it is given, never Python's internals.
    environment = jinja2.sandbox.SandboxedEnvironment(
        undefined=jinja2.StrictUndefined, keep_trailing_newline=True
    )
    try:
        text = environment.from_string(path.read_text()).render(context)
    except jinja2.TemplateSyntaxError as error:
        hint = template_syntax_hint(error.message or "")
        problem = Problem(path, f"template syntax: {error.message}", line=error.lineno, hint=hint)
        raise SiteError([problem]) from None
    except jinja2.UndefinedError as error:
        raise SiteError(
            [Problem(path, f"{error.message} (rendering for {machine.name})", line=_template_line(error))]
        ) from None
    except (jinja2.TemplateError, TypeError, ValueError, KeyError, AttributeError, OverflowError) as error:
        message = f"{type(error).__name__}: {error} (rendering for {machine.name})"
        raise SiteError([Problem(path, message, line=_template_line(error))]) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        raise SiteError(
            [
                Problem(
                    path,
                    f"invalid YAML: {getattr(error, 'problem', error)}",
                    line=mark.line + 1 if mark else None,
                )
            ]
        ) from None
    try:
        spec = TypeAdapter(WorkflowSpec).validate_python(data)
    except ValidationError as exc:
        problems = [
            Problem(path, error["msg"], field=".".join(str(part) for part in error["loc"]))
            for error in exc.errors()
        ]
        raise SiteError(problems) from None
    problems = []
    if not any(task.actions for task in spec.tasks):
        # It would wait for an agent forever: its global timeout counts from its first action.
        problems.append(Problem(path, "the workflow has no actions", field="tasks", hint="add an action"))
    for task in spec.tasks:
        for action in task.actions:
            where = f"tasks.{task.name}.{action.name}"
            if (action.action is None) == (action.command is None):
                problems.append(Problem(path, "give either `action:` or `command:`", field=where))
            elif action.action is not None and action.action not in BUILTIN_ACTIONS:
                problems.append(
                    Problem(
                        path,
                        f"unknown action {action.action!r}",
                        field=where,
                        hint=f"built-in actions: {', '.join(BUILTIN_ACTIONS)}; or use `command:`",
                    )
                )
    if problems:
        raise SiteError(problems)
    return spec


def _template_line(error: Exception) -> int | None:
    """The template line a Jinja2 error was raised at, from its traceback."""
    traceback = error.__traceback__
    line = None
    while traceback is not None:
        if traceback.tb_frame.f_code.co_filename == "<template>":
            line = traceback.tb_lineno
        traceback = traceback.tb_next
    return line
