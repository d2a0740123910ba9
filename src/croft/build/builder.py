"""Building machines' trees into .croft/build/<machine>/ with their manifests, incrementally.

An output is rebuilt only when its inputs changed: the source's stat, and for a template the
values it reads and the templates it includes. When nothing under the site changed at all, a
build costs one walk of stats and loads nothing else.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from croft.build import stamp
from croft.build.manifest import (
    UNIT_DIR,
    Entry,
    Manifest,
    install_targets,
    unit_of,
)
from croft.build.sources import (
    MACHINE_ORIGIN,
    TEMPLATE_SUFFIX,
    Composition,
    Source,
    compose,
    walk,
)
from croft.errors import Problem, SiteError
from croft.site.model import Machine, Site

GENERATED_ORIGIN = "(croft)"
RESERVED_VARIABLES = ("facts", "machine", "site")
CACHE_VERSION = 2


@dataclass
class BuildResult:
    machine: str
    manifest: Manifest
    written: int
    removed: int

    @property
    def changed(self) -> bool:
        return bool(self.written or self.removed)


def build_dir(site: Site, machine: str) -> Path:
    return site.state_dir / "build" / machine


def _cache_file(site: Site, machine: str) -> Path:
    return site.state_dir / "cache" / "build" / f"{machine}.json"


def facts_file(site: Site, machine: str) -> Path:
    return site.facts_dir / f"{machine}.json"


def composition(site: Site, machine: Machine) -> Composition:
    trees = [walk(layer.path, layer.name) for layer in site.machine_layers(machine)]
    trees.append(walk(machine.tree, MACHINE_ORIGIN))
    return compose(trees)


def inputs(site: Site, machines: Iterable[Machine]) -> list[stamp.Input]:
    """Every input of these machines' builds, with its stat as the walk saw it."""
    seen: dict[str, stamp.Input] = {}

    def add(path: Path | str, follow: bool = True, st: stamp.Stamp | None = None) -> None:
        key = str(path)
        if key not in seen:
            seen[key] = (key, follow, st if st is not None else stamp.stat(key, follow))

    for path in ("site.toml", "machines", "layers", "facts"):
        add(site.root / path)
    for machine in machines:
        add(machine.file)
        add(machine.tree)
        add(facts_file(site, machine.name))
        trees = [(layer.path, layer.name) for layer in site.machine_layers(machine)]
        for tree_root, origin in [*trees, (machine.tree, MACHINE_ORIGIN)]:
            add(tree_root)
            add(tree_root / "layer.toml")
            add(tree_root / "usr")
            for source in walk(tree_root, origin).sources:
                add(str(source.file), source.kind != "link", source.stamp)
    return list(seen.values())


def load_facts(site: Site, machine: str) -> dict[str, Any] | None:
    try:
        data: dict[str, Any] = json.loads(facts_file(site, machine).read_text())
        return data
    except FileNotFoundError:
        return None
    except ValueError as exc:
        raise SiteError(
            [
                Problem(
                    facts_file(site, machine),
                    f"invalid JSON: {exc}",
                    hint=f"run `croft facts --refresh {machine}`",
                )
            ]
        ) from None


def template_context(site: Site, machine: Machine) -> dict[str, Any]:
    context = site.variables(machine)
    context["facts"] = load_facts(site, machine.name) or {}
    context["machine"] = {
        "name": machine.name,
        "address": machine.address,
        "fqdn": f"{machine.name}.{site.config.domain}",
        "layers": list(machine.config.layers),
    }
    context["site"] = {"name": site.config.name, "domain": site.config.domain}
    return context


def build(
    site: Site,
    machines: list[Machine],
    *,
    write: bool = True,
    force: bool = False,
    record_as: str | None = None,
) -> dict[str, BuildResult]:
    """Build these machines; raises SiteError listing every problem in every machine.

    With write=False nothing is written (what `croft check` does).
    """
    results: dict[str, BuildResult] = {}
    problems: list[Problem] = []
    # Stats taken before building: an edit made while the build runs is seen by the next one.
    read = inputs(site, machines) if write and record_as is not None else []
    for machine in machines:
        problems += _reserved_variable_problems(site, machine)
    if problems:
        raise SiteError(problems)
    for machine in machines:
        try:
            results[machine.name] = MachineBuild(site, machine, write=write, force=force).run()
        except SiteError as exc:
            problems += exc.problems
    if problems:
        raise SiteError(_unique(problems))
    if write and record_as is not None:
        stamp.record(str(site.state_dir), record_as, read)
    return results


def _unique(problems: list[Problem]) -> list[Problem]:
    seen: dict[str, Problem] = {}
    for problem in problems:
        seen.setdefault(str(problem), problem)
    return list(seen.values())


def _reserved_variable_problems(site: Site, machine: Machine) -> list[Problem]:
    problems = []
    sources = [(site.root / "site.toml", site.config.vars), (machine.file, machine.config.vars)]
    sources += [(layer.path / "layer.toml", layer.config.vars) for layer in site.machine_layers(machine)]
    for file, variables in sources:
        for name in RESERVED_VARIABLES:
            if name in variables:
                problems.append(
                    Problem(
                        file,
                        f"vars.{name} is reserved: templates get `{name}` from croft",
                        field=f"vars.{name}",
                        hint="rename the variable",
                    )
                )
    return problems


_content_hashes: dict[tuple[Path, tuple[int, int, int, int]], str] = {}


def _file_hash(source: Source) -> str:
    key = (source.file, source.stamp)
    if key not in _content_hashes:
        with open(source.file, "rb") as stream:
            _content_hashes[key] = hashlib.file_digest(stream, "sha256").hexdigest()
    return _content_hashes[key]


def _write_atomic(path: Path, data: str | bytes, mode: int | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.croft-tmp")
    with open(tmp, "wb") as stream:
        stream.write(data.encode() if isinstance(data, str) else data)
    if mode is not None:
        os.chmod(tmp, mode)
    os.replace(tmp, path)


class MachineBuild:
    """One machine's build: compose, reuse what is current, produce the rest, drop the stale."""

    def __init__(self, site: Site, machine: Machine, *, write: bool, force: bool) -> None:
        self.site = site
        self.machine = machine
        self.write = write
        self.root = build_dir(site, machine.name) / "root"
        self.cache_path = _cache_file(site, machine.name)
        # `check` writes nothing, so it produces everything in memory rather than trusting the cache.
        self.cache: dict[str, list[Any]] = {} if force or not write else self._read_cache()
        self.problems: list[Problem] = []
        self.written = 0
        self.context: dict[str, Any] | None = None
        self.templates: dict[str, Path] = {}
        self.unit_texts: dict[str, str] = {}
        self.template_deps: dict[str, dict[str, list[str]]] = {}
        layers = site.machine_layers(machine)
        self.secret_globs = [glob for layer in layers for glob in layer.config.secrets]
        self.unit_globs = [
            (unit, glob)
            for layer in layers
            for unit, config in layer.config.units.items()
            for glob in config.config
        ]

    def _read_cache(self) -> dict[str, list[Any]]:
        try:
            data = json.loads(self.cache_path.read_text())
        except (OSError, ValueError):
            return {}
        if data.get("version") != CACHE_VERSION or not self.root.is_dir():
            return {}
        outputs: dict[str, list[Any]] = data["outputs"]
        return outputs

    def run(self) -> BuildResult:
        comp = composition(self.site, self.machine)
        self.problems += comp.problems
        # Templates are named by their path in the tree, e.g. {% include "usr/local/etc/a.j2" %}.
        self.templates = {
            s.path + TEMPLATE_SUFFIX: s.file for s in comp.sources.values() if s.kind == "template"
        }
        entries: dict[str, Entry] = {}
        outputs: dict[str, list[Any]] = {}
        for path, source in comp.sources.items():
            result = self._output(path, source)
            if result is not None:
                outputs[path] = result
                entries[path] = Entry.from_json(result[1])
        wanted = self._wanted(entries, outputs)
        if self.problems:
            raise SiteError(self.problems)
        removed = self._remove_stale(outputs)
        manifest = Manifest(self.machine.name, entries, wanted)
        if self.write and (self.written or removed or not (self.root.parent / "manifest.json").exists()):
            _write_atomic(self.root.parent / "manifest.json", manifest.to_json())
            # The digest alone is what a deploy reads first on the target to find it has nothing to do.
            _write_atomic(self.root.parent / "digest", manifest.digest + "\n")
            _write_atomic(self.cache_path, json.dumps({"version": CACHE_VERSION, "outputs": outputs}))
        return BuildResult(self.machine.name, manifest, self.written, removed)

    # -- one output -------------------------------------------------------------------------

    def _units(self, path: str) -> tuple[str, ...]:
        units = [unit] if (unit := unit_of(path)) else []
        units += [u for u, glob in self.unit_globs if fnmatch.fnmatchcase(path, glob) and u not in units]
        return tuple(units)

    def _secret(self, path: str) -> bool:
        return any(fnmatch.fnmatchcase(path, glob) for glob in self.secret_globs)

    def _output(self, path: str, source: Source) -> list[Any] | None:
        """[cache key, manifest entry] for one path, producing the output when it is stale."""
        secret = self._secret(path)
        mode = 0o600 if secret and source.kind != "dir" else source.stamp[3] & 0o7777
        if source.kind == "template":
            key = self._template_key(source)
            if key is None:
                return None
        elif source.kind == "link":
            key = ["link", os.readlink(source.file)]
        else:
            key = [source.kind, str(source.file), *source.stamp]
        key += [mode, source.origin]
        cached = self.cache.get(path)
        if cached is not None and cached[0] == key:
            return cached
        entry = self._produce(path, source, mode, secret)
        if entry is None:
            return None
        if source.kind == "template":
            return [key, entry.to_json(), self.template_deps[path]]
        return [key, entry.to_json()]

    def _template_key(self, source: Source) -> list[Any] | None:
        """The cache key of a template's output: its source, and the values and includes it reads.

        What it reads is found by parsing it (which needs Jinja2), once per version of its source:
        the names are kept in the cache, so an unchanged template costs no Jinja2 import.
        """
        from croft.build import render

        if self.context is None:
            self.context = template_context(self.site, self.machine)
        cached = self.cache.get(source.path)
        if (
            cached is not None
            and len(cached) > 2
            and cached[0][:6] == ["template", str(source.file), *source.stamp]
        ):
            names, includes = set(cached[2]["names"]), set(cached[2]["includes"])
        else:
            parsed = self._parse_template(source)
            if parsed is None:
                return None
            names, includes = parsed
        missing = render.undefined_names(names, self.context)
        if missing:
            for name_missing in missing:
                self.problems.append(self._undefined_problem(source, name_missing))
            return None
        self.template_deps[source.path] = {"names": sorted(names), "includes": sorted(includes)}
        if "*" in includes:
            includes = set(self.templates)
        stamps = sorted(
            (inc, os.stat(self.templates[inc]).st_mtime_ns) for inc in includes if inc in self.templates
        )
        return [
            "template",
            str(source.file),
            *source.stamp,
            render.values_digest(self.context, names),
            stamps,
        ]

    def _parse_template(self, source: Source) -> tuple[set[str], set[str]] | None:
        import jinja2

        from croft.build import render

        try:
            return render.dependencies(render.environment(self.templates), source.path + TEMPLATE_SUFFIX)
        except jinja2.TemplateSyntaxError as exc:
            self.problems.append(
                Problem(source.file, f"template syntax error: {exc.message}", line=exc.lineno)
            )
            return None

    def _undefined_problem(self, source: Source, name: str) -> Problem:
        head = name.partition(".")[0]
        line = _first_line_naming(source.file, name.rpartition(".")[2])
        if head == "facts" and load_facts(self.site, self.machine.name) is None:
            return Problem(
                source.file,
                f"uses {name} but no facts were gathered for {self.machine.name}",
                line=line,
                hint=f"run `croft facts {self.machine.name}`",
            )
        return Problem(
            source.file,
            f"undefined variable {name!r} (machine {self.machine.name})",
            line=line,
            hint="define it in site.toml, the layer's layer.toml or the machine's [vars]",
        )

    def _produce(self, path: str, source: Source, mode: int, secret: bool) -> Entry | None:
        target = self.root / path
        units = self._units(path)
        if source.kind == "dir":
            if self.write:
                target.mkdir(parents=True, exist_ok=True)
                os.chmod(target, mode)
            return Entry("dir", mode=mode, origin=source.origin, units=units)
        if source.kind == "link":
            link = os.readlink(source.file)
            if self.write:
                self._replace_with_link(target, link)
            return Entry("link", target=link, origin=source.origin, units=units)
        if source.kind == "template":
            from croft.build import render

            assert self.context is not None
            env = render.environment(self.templates)
            try:
                text = render.render(env, source.path + TEMPLATE_SUFFIX, source.file, self.context)
            except render.TemplateFailure as failure:
                self.problems.append(failure.problem)
                return None
            if unit_of(path):
                self.unit_texts[path] = text
            data = text.encode()
            digest = hashlib.sha256(data).hexdigest()
            if self.write and _current_hash(target) != digest:
                _write_atomic(target, data, mode)
                self.written += 1
            elif self.write:
                os.chmod(target, mode)
            return Entry("file", mode=mode, sha256=digest, origin=source.origin, units=units, secret=secret)
        digest = _file_hash(source)
        if unit_of(path):
            self.unit_texts[path] = source.file.read_text()
        if self.write:
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(f".{target.name}.croft-tmp")
            shutil.copyfile(source.file, tmp)
            os.chmod(tmp, mode)
            # Keep the source's mtime: rsync's quick check then matches across generations.
            st = os.stat(source.file)
            os.utime(tmp, ns=(st.st_atime_ns, st.st_mtime_ns))
            os.replace(tmp, target)
            self.written += 1
        return Entry("file", mode=mode, sha256=digest, origin=source.origin, units=units, secret=secret)

    def _replace_with_link(self, target: Path, link: str) -> None:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.croft-tmp")
        if os.path.lexists(tmp):
            os.unlink(tmp)
        os.symlink(link, tmp)
        os.replace(tmp, target)
        self.written += 1

    # -- units --------------------------------------------------------------------------------

    def _wanted(self, entries: dict[str, Entry], outputs: dict[str, list[Any]]) -> dict[str, tuple[str, ...]]:
        """Units whose [Install] section wants them, with the links croft ships for that."""
        wanted: dict[str, tuple[str, ...]] = {}
        for path, entry in list(entries.items()):
            unit = unit_of(path)
            if entry.type != "file" or unit is None or path != f"{UNIT_DIR}/{unit}":
                continue
            text = self.unit_texts.get(path) or (self.root / path).read_text()
            targets = install_targets(text)
            if not targets:
                continue
            wanted[unit] = targets
            for directory in targets:
                dir_path = f"{UNIT_DIR}/{directory}"
                link_path = f"{dir_path}/{unit}"
                if link_path in entries:
                    continue  # the layer ships this link itself
                if dir_path not in entries:
                    entries[dir_path] = Entry("dir", mode=0o755, origin=GENERATED_ORIGIN)
                    outputs[dir_path] = [["generated"], entries[dir_path].to_json()]
                    if self.write:
                        (self.root / dir_path).mkdir(parents=True, exist_ok=True)
                entries[link_path] = Entry("link", target=f"../{unit}", origin=GENERATED_ORIGIN)
                outputs[link_path] = [["generated"], entries[link_path].to_json()]
                if self.write and not _is_link_to(self.root / link_path, f"../{unit}"):
                    self._replace_with_link(self.root / link_path, f"../{unit}")
        return wanted

    def _remove_stale(self, outputs: dict[str, list[Any]]) -> int:
        stale = [path for path in self.cache if path not in outputs]
        if not self.write:
            return len(stale)
        for path in sorted(stale, reverse=True):  # children before their directories
            target = self.root / path
            if target.is_dir() and not target.is_symlink():
                try:
                    target.rmdir()
                except OSError:
                    continue
            elif os.path.lexists(target):
                target.unlink()
        return len(stale)


def _current_hash(path: Path) -> str | None:
    try:
        with open(path, "rb") as stream:
            return hashlib.file_digest(stream, "sha256").hexdigest()
    except FileNotFoundError:
        return None


def _is_link_to(path: Path, target: str) -> bool:
    return path.is_symlink() and os.readlink(path) == target


def _first_line_naming(file: Path, name: str) -> int | None:
    try:
        for number, line in enumerate(file.read_text().splitlines(), start=1):
            if name in line:
                return number
    except OSError:
        pass
    return None
