"""Rendering `.j2` templates with Jinja2, and finding what each template depends on.

A template's output is reused until its source or one of the values it names changes; the
names are found statically in its syntax tree (top-level variables, and the keys it reads of
`facts` and `machine`), so conditionals cannot hide a dependency.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from croft.inplace import StrPath

if TYPE_CHECKING:
    import jinja2
    from jinja2 import nodes

    from croft.errors import Problem

TEMPLATE_SUFFIX = ".j2"
"""What names a template in a tree; its output drops it."""

# Jinja2's own globals (jinja2.defaults.DEFAULT_NAMESPACE), named here to avoid importing it.
JINJA_GLOBALS = {"range", "dict", "lipsum", "cycler", "joiner", "namespace"}
# Mappings whose keys are tracked one by one rather than as a whole.
TRACKED_MAPPINGS = ("facts", "machine")


class TemplateFailure(Exception):
    def __init__(self, problem: Problem) -> None:
        super().__init__(str(problem))
        self.problem = problem


_environment: jinja2.Environment | None = None
# Compiled templates and their dependencies by source file and stat: machines sharing a layer
# share its templates, which are compiled and analysed once however many machines render them.
_compiled: dict[tuple[str, tuple[int, int]], jinja2.Template] = {}
_dependencies: dict[tuple[str, tuple[int, int]], tuple[set[str], set[str]]] = {}


def forget() -> None:
    """Drop what was compiled and found: a process that outlives a build (build/warm.py) may see
    a file change within one tick of its clock, its stat unchanged."""
    _compiled.clear()
    _dependencies.clear()


def environment(templates: Mapping[str, str]) -> jinja2.Environment:
    """A strict environment whose loader resolves includes among this machine's templates."""
    global _environment
    import jinja2

    if _environment is None:
        _environment = jinja2.Environment(
            undefined=jinja2.StrictUndefined,
            keep_trailing_newline=True,
            autoescape=False,
            # Jinja2 caches by name, but one name can be a different file on another machine.
            cache_size=0,
        )
    _environment.loader = jinja2.FunctionLoader(lambda name: _load(templates, name))
    return _environment


def _version(file: StrPath) -> tuple[str, tuple[int, int]]:
    st = os.stat(file)
    return os.fspath(file), (st.st_mtime_ns, st.st_size)


def _read(file: StrPath) -> str:
    with open(file) as stream:
        return stream.read()


def _load(templates: Mapping[str, str], name: str) -> tuple[str, str, Any] | None:
    file = templates.get(name.lstrip("/"))
    if file is None:
        return None
    with open(file) as stream:
        return stream.read(), file, lambda: False  # never reused: see cache_size above


def dependencies(env: jinja2.Environment, name: str, file: StrPath) -> tuple[set[str], set[str]]:
    """The context names a template reads (e.g. "port", "facts.arch") and the templates it includes."""
    version = _version(file)
    if version not in _dependencies:
        _dependencies[version] = _find_dependencies(env, name, file)
    return _dependencies[version]


def _find_dependencies(env: jinja2.Environment, name: str, file: StrPath) -> tuple[set[str], set[str]]:
    from jinja2 import meta

    ast = env.parse(_read(file), name=name, filename=os.fspath(file))
    names: set[str] = set()
    for top in meta.find_undeclared_variables(ast):
        if top in TRACKED_MAPPINGS:
            names |= _keys_read(ast, top)
        else:
            names.add(top)
    includes = {ref for ref in meta.find_referenced_templates(ast) if ref is not None}
    if None in meta.find_referenced_templates(ast):
        includes.add("*")
    return names, includes


def _keys_read(ast: nodes.Template, mapping: str) -> set[str]:
    """`facts.arch` and `facts["arch"]` read one key; any other use reads the whole mapping."""
    from jinja2 import nodes

    keys: set[str] = set()
    seen_keyed: set[int] = set()
    for node in ast.find_all((nodes.Getattr, nodes.Getitem)):
        inner = getattr(node, "node", None)
        if isinstance(inner, nodes.Name) and inner.name == mapping:
            arg = getattr(node, "arg", None)
            if isinstance(node, nodes.Getattr):
                keys.add(f"{mapping}.{node.attr}")
            elif isinstance(arg, nodes.Const) and isinstance(arg.value, str):
                keys.add(f"{mapping}.{arg.value}")
            else:
                return {mapping}
            seen_keyed.add(id(inner))
    for name in ast.find_all(nodes.Name):
        if name.name == mapping and name.ctx == "load" and id(name) not in seen_keyed:
            return {mapping}
    return keys


def values_digest(context: Mapping[str, Any], names: set[str]) -> str:
    """A digest of the values of `names` in `context`: equal digests render equal outputs."""
    picked: dict[str, Any] = {}
    for name in sorted(names):
        head, _, key = name.partition(".")
        value = context.get(head, _MISSING)
        if key and isinstance(value, Mapping):
            value = value.get(key, _MISSING)
        picked[name] = value
    blob = json.dumps(picked, sort_keys=True, default=repr)
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


_MISSING = "\0missing"


def template_key(
    file: str,
    stamp: Sequence[int],
    context: Mapping[str, Any],
    names: set[str],
    includes: set[str],
    templates: Mapping[str, str],
) -> list[Any]:
    """What a template's output is made of: its source, the values it reads and the versions of
    the templates it includes (all of them for an include by a computed name)."""
    if "*" in includes:
        includes = set(templates)
    stamps = sorted((name, os.stat(templates[name]).st_mtime_ns) for name in includes if name in templates)
    return ["template", file, *stamp, values_digest(context, names), [list(pair) for pair in stamps]]


def undefined_names(names: set[str], context: Mapping[str, Any]) -> list[str]:
    """The names a template reads that the context does not define (for `croft check`)."""
    missing = []
    for name in sorted(names):
        head, _, key = name.partition(".")
        if head in JINJA_GLOBALS:
            continue
        if head not in context:
            missing.append(head)
        elif key and isinstance(context[head], Mapping) and key not in context[head]:
            missing.append(name)
    return missing


def render(env: jinja2.Environment, name: str, file: StrPath, context: Mapping[str, Any]) -> str:
    """Render one template; failures become a TemplateFailure naming file and line."""
    try:
        version = _version(file)
        if version not in _compiled:
            code = env.compile(_read(file), name=name, filename=os.fspath(file))
            _compiled[version] = env.template_class.from_code(env, code, env.make_globals(None), None)
        return _compiled[version].render(context)
    except Exception as exc:  # a template may raise anything a filter or a test can
        raise TemplateFailure(template_problem(exc, file)) from None


def template_problem(exc: Exception, file: StrPath) -> Problem:
    """What went wrong in a template, where (imported only then: the quick path needs speed)."""
    from pathlib import Path

    import jinja2

    from croft.errors import Problem, template_syntax_hint

    if isinstance(exc, jinja2.TemplateSyntaxError):
        return Problem(
            Path(file),
            f"template syntax error: {exc.message}",
            line=exc.lineno,
            hint=template_syntax_hint(exc.message or ""),
        )
    if isinstance(exc, jinja2.UndefinedError):
        return Problem(
            Path(file),
            f"undefined variable: {exc.message}",
            line=_template_line(exc, file),
            hint="define it in site.toml, the layer's layer.toml or the machine's [vars]",
        )
    return Problem(
        Path(file), f"template failed: {type(exc).__name__}: {exc}", line=_template_line(exc, file)
    )


def _template_line(exc: BaseException, file: StrPath) -> int | None:
    """The line of the template that failed: Jinja2 rewrites tracebacks to point into it."""
    line = None
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == os.fspath(file):
            line = tb.tb_lineno
        tb = tb.tb_next
    return line
