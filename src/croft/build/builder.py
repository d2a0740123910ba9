"""Building machines' trees into .croft/build/<machine>/ with their manifests, incrementally.

An output is rebuilt only when its inputs changed: the source's stat, and for a template the
values it reads and the templates it includes. When nothing under the site changed at all, a
build costs one walk of stats and loads nothing else. When only the content of some files
changed, it redoes exactly the outputs made from them (found through the build state's index)
and looks at nothing else.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import stat
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from croft import inplace
from croft.build import stamp
from croft.build.manifest import Entry, Manifest, install_targets, unit_of
from croft.build.render import TEMPLATE_SUFFIX
from croft.build.result import BuildResult, build_dir, unchanged
from croft.build.sources import (
    MACHINE_ORIGIN,
    Composition,
    Kind,
    Source,
    compose,
    forget_walks,
    walk,
)
from croft.build.state import BuildState, MachineLevel, Output, output_key
from croft.errors import Problem, SiteError
from croft.layout import UNIT_DIR
from croft.repository import source as apt_source
from croft.site.model import Machine, Site
from croft.systemd import (
    alerts,
    bastion,
    bridge,
    firewall,
    generated,
    journal,
    names,
    overlay,
    package_cache,
    upgrades,
)

GENERATED_ORIGIN = "(croft)"
RESERVED_VARIABLES = ("facts", "machine", "site")


def open_state(site: Site) -> BuildState:
    return BuildState(site.state_dir / "cache" / "build.db")


def facts_file(site: Site, machine: str) -> Path:
    return site.facts_dir / f"{machine}.json"


def trees(site: Site, machine: Machine) -> list[tuple[Path, str]]:
    """The trees a machine is composed of, in order, with their origins: what croft generates
    for the site's names, each layer followed by what croft generates for its services, then the
    machine's own tree."""
    found = names.trees(site, machine) + overlay.trees(site, machine) + firewall.trees(site, machine)
    found += bastion.trees(site, machine) + bridge.trees(site, machine)
    found += package_cache.trees(site, machine) + upgrades.trees(site, machine)
    found += journal.trees(site, machine) + alerts.trees(site, machine)
    if apt_source.wanted(site):
        found.append((site.generated_dir(apt_source.TREE), "(croft repository)"))
    for layer in site.machine_layers(machine):
        found.append((layer.path, layer.name))
        if layer.config.services:
            found.append((site.generated_dir(layer.name), f"{layer.name} (generated)"))
    found.append((machine.tree, MACHINE_ORIGIN))
    return found


def composition(site: Site, machine: Machine) -> Composition:
    return compose([walk(root, origin) for root, origin in trees(site, machine)])


def inputs(site: Site, machines: Iterable[Machine]) -> list[stamp.Input]:
    """Every input of these machines' builds, with its stat as the walk saw it."""
    seen: dict[str, stamp.Input] = {}

    def add(path: Path | str, follow: bool = True, st: stamp.Stamp | None = None) -> None:
        key = str(path)
        if key not in seen:
            seen[key] = (key, follow, st if st is not None else stamp.stat(key, follow))

    for path in ("site.toml", "machines", "layers", "facts"):
        add(site.root / path)
    roots: dict[tuple[Path, str], None] = {}
    for machine in machines:
        add(machine.file)
        add(facts_file(site, machine.name))
        roots.update(dict.fromkeys(trees(site, machine)))
    for tree_root, origin in roots:
        add(tree_root)
        add(tree_root / "layer.toml")
        add(tree_root / "services")
        for service_file in sorted((tree_root / "services").glob("*.toml")):
            add(service_file)
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
    changes: stamp.Changes | None = None,
) -> dict[str, BuildResult]:
    """Build these machines; raises SiteError listing every problem in every machine.

    With write=False nothing is written (what `croft check` does). `changes`, the fast path's
    finding for `record_as`, lets a build redo only the outputs made from the changed files.
    """
    problems: list[Problem] = []
    for machine in machines:
        problems += _reserved_variable_problems(site, machine)
    if problems:
        raise SiteError(problems)
    # What croft generates for services and names is composed like a layer; it is made here,
    # in the build (loading a site writes nothing).
    generated.write(site)
    apt_source.write(site)
    state = open_state(site) if write else None
    try:
        if state is not None and record_as is not None and not force:
            if changes is None:
                changes = stamp.changes(str(site.state_dir), record_as)
            results = _build_changed(site, state, machines, changes) if changes is not None else None
            if results is not None and changes is not None:
                stamp.refresh(str(site.state_dir), record_as, changes)
                return results
        # Stats taken before building: an edit made while the build runs is seen by the next one.
        # (Walked anew, so that no stat is older than taken_ns.)
        forget_walks()
        taken_ns = time.time_ns()
        read = inputs(site, machines) if write and record_as is not None else []
        results = _build_machines(site, state, machines, force=force, taken_ns=taken_ns)
        if write and record_as is not None:
            stamp.record(str(site.state_dir), record_as, read, taken_ns)
        return results
    finally:
        if state is not None:
            state.close()


# Below this many machines a whole build is quicker in one process than forking workers.
PARALLEL_FROM = 4


def _build_machines(
    site: Site, state: BuildState | None, machines: list[Machine], *, force: bool, taken_ns: int
) -> dict[str, BuildResult]:
    """Build every machine: in worker processes, one per core, when there is enough to do."""
    workers = min(os.cpu_count() or 1, len(machines))
    if state is None or workers < 2 or len(machines) < PARALLEL_FROM:
        outcomes = [_build_some(site, machines, force, taken_ns, state)]
    else:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        # Forked: the workers start with the loaded site and the walked trees. Each opens its own
        # connection to the build state (SQLite serializes their writes).
        shares = [machines[index::workers] for index in range(workers)]
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork")) as pool:
            futures = [pool.submit(_build_in_worker, site, share, force, taken_ns) for share in shares]
            outcomes = [future.result() for future in futures]
    results: dict[str, BuildResult] = {}
    problems: list[Problem] = []
    for built, found in outcomes:
        results.update(built)
        problems += found
    if problems:
        raise SiteError(_unique(problems))
    return {machine.name: results[machine.name] for machine in machines}


def _build_some(
    site: Site, machines: list[Machine], force: bool, taken_ns: int, state: BuildState | None
) -> tuple[dict[str, BuildResult], list[Problem]]:
    """Build these machines with `state` (None: write nothing); every machine's problems."""
    results: dict[str, BuildResult] = {}
    problems: list[Problem] = []
    for machine in machines:
        try:
            results[machine.name] = MachineBuild(site, machine, state, force=force, taken_ns=taken_ns).run()
        except SiteError as exc:
            problems += exc.problems
    return results, problems


def _build_in_worker(
    site: Site, machines: list[Machine], force: bool, taken_ns: int
) -> tuple[dict[str, BuildResult], list[Problem]]:
    """_build_some in a forked worker, with a connection of its own to the build state."""
    state = open_state(site)
    try:
        results, problems = _build_some(site, machines, force, taken_ns, state)
    finally:
        state.close()
    for result in results.values():
        result._manifest = None  # the parent reads the manifests it needs, rather than a pickle
    return results, problems


def _build_changed(
    site: Site, state: BuildState, machines: list[Machine], changes: stamp.Changes
) -> dict[str, BuildResult] | None:
    """Redo only the outputs made from the changed files; None when the change is more than that.

    Anything that is not a known source (a TOML file, facts, a file added or removed) can change
    any output, and takes a full build; so does a build directory removed by hand.
    """
    if changes.structural:
        return None
    known, affected = state.affected(changes.files)
    if set(changes.files) - known:
        return None
    if not all((build_dir(site, m.name) / "manifest.json").exists() for m in machines):
        return None
    results: dict[str, BuildResult] = {}
    problems: list[Problem] = []
    for machine in machines:
        paths = affected.get(machine.name)
        if not paths:
            results[machine.name] = unchanged(site, machine.name)
            continue
        try:
            taken_ns = changes.taken_ns
            result = MachineBuild(site, machine, state, force=False, taken_ns=taken_ns).update(paths)
            if result is None:
                result = MachineBuild(site, machine, state, force=False, taken_ns=taken_ns).run()
            results[machine.name] = result
        except SiteError as exc:
            problems += exc.problems
    if problems:
        raise SiteError(_unique(problems))
    return results


def _missing_vm_images(site: Site, machine: Machine, comp: Composition) -> list[Problem]:
    """A VM's image must be in the machine's tree (a file, not a directory)."""
    problems = []
    for layer in site.machine_layers(machine):
        for name, service in layer.config.services.items():
            if service.vm is None:
                continue
            source = comp.sources.get(service.vm.image.strip("/"))
            if source is None or source.kind != "file":
                own_file = layer.path / "services" / f"{name}.toml"
                problems.append(
                    Problem(
                        own_file if own_file.exists() else layer.path / "layer.toml",
                        f"vm.image: {service.vm.image} is not a file in {machine.name}'s tree",
                        hint="ship the image in a layer, e.g. a `!` link to .croft/images/NAME.qcow2 "
                        "after `croft image build NAME`",
                    )
                )
    return problems


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


def _racy(source: Source, taken_ns: int) -> bool:
    """Modified so close to when its stat was taken (after `taken_ns`) that it may change again
    without its stat changing (see stamp.RACY_NS); the stamp files the same sources as racy."""
    return stamp.racy(source.stamp[0], taken_ns)


def _file_hash(source: Source, taken_ns: int) -> str:
    """The source's sha256, remembered by its stat (for machines sharing a layer) unless racy."""
    key = (source.file, source.stamp)
    if key in _content_hashes:
        return _content_hashes[key]
    digest = inplace.sha256(source.file)
    if not _racy(source, taken_ns):
        _content_hashes[key] = digest
    return digest


class MachineBuild:
    """One machine's build: compose, reuse what is current, produce the rest, drop the stale."""

    def __init__(
        self, site: Site, machine: Machine, state: BuildState | None, *, force: bool, taken_ns: int
    ) -> None:
        self.site = site
        self.taken_ns = taken_ns
        """When the stats of the sources were taken (or just before)."""
        self.machine = machine
        self.state = state
        # Without a state (`croft check`) nothing is written.
        self.write = state is not None
        self.directory = build_dir(site, machine.name)
        self.root = self.directory / "root"
        if state is not None and (force or not self.root.is_dir()):
            state.forget(machine.name)
        self.cache: dict[str, Output] = {}
        self.problems: list[Problem] = []
        self.written = 0
        self.context: dict[str, Any] | None = None
        self.templates: dict[str, str] = {}
        """Template names (tree path + .j2, as includes name them) and their source files."""
        self.unit_texts: dict[str, str] = {}
        self.template_deps: dict[str, dict[str, list[str]]] = {}
        layers = site.machine_layers(machine)
        self.secret_globs = [glob for layer in layers for glob in layer.config.secrets]
        self.secret_globs += generated.secret_globs(site, machine)
        self.unit_globs = [
            (unit, glob)
            for layer in layers
            for unit, config in layer.config.units.items()
            for glob in config.config
        ]
        # A service's config overlays are its files: a change restarts (or reloads) it.
        self.unit_globs += [
            (service.unit_name(name), tree_path.lstrip("/"))
            for layer in layers
            for name, service in layer.config.services.items()
            for tree_path in service.config.values()
        ]
        # So are a container's files: a change makes a new template, at its restart.
        self.unit_globs += [
            (service.unit_name(name), service.container.rootfs.strip("/") + "/*")
            for layer in layers
            for name, service in layer.config.services.items()
            if service.container is not None
        ]
        self.unit_globs += generated.unit_globs(site, machine)

    def run(self) -> BuildResult:
        """Build the whole tree, reusing every output whose key still matches."""
        if self.state is not None:
            self.cache = self.state.outputs(self.machine.name)
        comp = composition(self.site, self.machine)
        self.problems += comp.problems
        self.problems += _missing_vm_images(self.site, self.machine, comp)
        # Templates are named by their path in the tree, e.g. {% include "usr/local/etc/a.j2" %}.
        self.templates = {
            s.path + TEMPLATE_SUFFIX: str(s.file) for s in comp.sources.values() if s.kind == "template"
        }
        outputs: dict[str, Output] = {}
        for path, source in comp.sources.items():
            output = self._output(path, source)
            if output is not None:
                outputs[path] = output
        wanted = self._wanted(outputs)
        packages = generated.packages(self.site, self.machine)
        outside = {**generated.outside_links(self.site, self.machine), **apt_source.outside_links(self.site)}
        for path, target in sorted(outside.items()):
            if target not in outputs:
                self.problems.append(
                    Problem(
                        self.machine.file, f"/{path} would link to /{target}, which the tree does not hold"
                    )
                )
        if self.problems:
            raise SiteError(self.problems)
        stale = [path for path in self.cache if path not in outputs]
        self._remove(stale)
        entries = {path: output.entry for path, output in outputs.items()}
        manifest = Manifest(self.machine.name, entries, wanted, packages, outside)
        changed = {path: out for path, out in outputs.items() if self.cache.get(path) is not out}
        self._save(changed, stale, MachineLevel(wanted, packages, outside))
        return BuildResult(self.machine.name, self.directory, self.written, len(stale), manifest)

    def update(self, paths: set[str]) -> BuildResult | None:
        """Redo only these paths, whose sources changed in content; None if that is not enough."""
        assert self.state is not None
        self.cache = self.state.outputs(self.machine.name, paths)
        if any(output.kind == "template" for output in self.cache.values()):
            self.templates = self.state.templates(self.machine.name)
        changed: dict[str, Output] = {}
        for path in sorted(paths):
            cached = self.cache[path]
            source = _source_again(path, cached)
            # A unit file can change what is wanted, which only a whole build works out.
            if source is None or path == f"{UNIT_DIR}/{unit_of(path)}":
                return None
            output = self._output(path, source)
            if output is not None and output is not cached:
                changed[path] = output
        if self.problems:
            raise SiteError(self.problems)
        self._save(changed, [], None)
        return BuildResult(self.machine.name, self.directory, self.written, 0)

    def _save(
        self,
        changed: dict[str, Output],
        removed: list[str],
        level: MachineLevel | None,
    ) -> None:
        """Store what changed; `level` from a whole build only."""
        if self.state is None:
            return
        if self.context is not None and level is not None:
            # A whole build (wanted worked out): the context may have changed. An update() is
            # for content alone, after which the kept context still holds.
            self.state.save_context(self.machine.name, self.context)
        manifest_file = self.directory / "manifest.json"
        if changed or removed or (level is not None and level != self.state.machine_level(self.machine.name)):
            self.state.save(self.machine.name, changed, removed, self.templates, level)
        elif manifest_file.exists():
            return
        self.state.write_manifest(self.machine.name, self.directory)

    # -- one output -------------------------------------------------------------------------

    def _units(self, path: str) -> tuple[str, ...]:
        units = [unit] if (unit := unit_of(path)) else []
        units += [u for u, glob in self.unit_globs if fnmatch.fnmatchcase(path, glob) and u not in units]
        return tuple(units)

    def _secret(self, path: str) -> bool:
        return any(fnmatch.fnmatchcase(path, glob) for glob in self.secret_globs)

    def _output(self, path: str, source: Source) -> Output | None:
        """The output for one path: the cached one when its key matches, else produced anew."""
        secret = self._secret(path)
        mode = 0o600 if secret and source.kind != "dir" else source.stamp[3] & 0o7777
        if source.kind == "template":
            key = self._template_key(source)
            if key is None:
                return None
        elif source.kind == "link":
            key = ["link", os.readlink(source.file)]
        else:
            key = output_key(source.kind, str(source.file), source.stamp, mode, source.origin)
        if source.kind in ("template", "link"):
            key += [mode, source.origin]
        if source.kind != "dir" and _racy(source, self.taken_ns):
            # It may change again without its stat changing: never reuse what was made of it.
            key.append(stamp.racy_mark())
        cached = self.cache.get(path)
        if cached is not None and cached.key == key:
            return cached
        entry = self._produce(path, source, mode, secret)
        if entry is None:
            return None
        deps = self.template_deps.get(path) if source.kind == "template" else None
        return Output(key, entry, str(source.file), source.kind, source.origin, deps)

    def _template_key(self, source: Source) -> list[Any] | None:
        """The cache key of a template's output: its source, and the values and includes it reads.

        What it reads is found by parsing it (which needs Jinja2), once per version of its source:
        the names are kept in the build state, so an unchanged template costs no Jinja2 import.
        """
        from croft.build import render

        if self.context is None:
            self.context = template_context(self.site, self.machine)
        cached = self.cache.get(source.path)
        if (
            cached is not None
            and cached.deps is not None
            and cached.key[:6] == ["template", str(source.file), *source.stamp]
        ):
            names, includes = set(cached.deps["names"]), set(cached.deps["includes"])
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
        return render.template_key(
            str(source.file), source.stamp, self.context, names, includes, self.templates
        )

    def _parse_template(self, source: Source) -> tuple[set[str], set[str]] | None:
        import jinja2

        from croft.build import render

        try:
            env = render.environment(self.templates)
            return render.dependencies(env, source.path + TEMPLATE_SUFFIX, source.file)
        except jinja2.TemplateSyntaxError as exc:
            self.problems.append(render.template_problem(exc, source.file))
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
            if self.write and not _is_link_to(target, link):
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
            if self.write and inplace.put(target, data, digest, mode):
                self.written += 1
            return Entry("file", mode=mode, sha256=digest, origin=source.origin, units=units, secret=secret)
        if unit_of(path):
            self.unit_texts[path] = source.file.read_text()
        digest = _file_hash(source, self.taken_ns)
        cached = self.cache.get(path)
        if not self.write:
            return Entry("file", mode=mode, sha256=digest, origin=source.origin, units=units, secret=secret)
        if cached is not None and cached.entry.sha256 == digest and os.path.isfile(target):
            os.chmod(target, mode)  # the same content (a "racy" source, looked at again)
        else:
            digest = inplace.produce(source.file, target, mode)
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

    def _wanted(self, outputs: dict[str, Output]) -> dict[str, tuple[str, ...]]:
        """Units whose [Install] section wants them, with the links croft ships for that."""
        wanted: dict[str, tuple[str, ...]] = {}
        for path, output in list(outputs.items()):
            unit = unit_of(path)
            if output.entry.type != "file" or unit is None or path != f"{UNIT_DIR}/{unit}":
                continue
            if "@." in unit:
                continue  # a template is wanted through links to its instances
            text = self.unit_texts.get(path) or (self.root / path).read_text()
            targets = install_targets(text)
            if not targets:
                continue
            wanted[unit] = targets
            for directory in targets:
                dir_path = f"{UNIT_DIR}/{directory}"
                link_path = f"{dir_path}/{unit}"
                if link_path in outputs:
                    continue  # the layer ships this link itself
                if dir_path not in outputs:
                    directory_entry = Entry("dir", mode=0o755, origin=GENERATED_ORIGIN)
                    outputs[dir_path] = self._generated(dir_path, directory_entry)
                    if self.write:
                        (self.root / dir_path).mkdir(parents=True, exist_ok=True)
                link = Entry("link", target=f"../{unit}", origin=GENERATED_ORIGIN)
                outputs[link_path] = self._generated(link_path, link)
                if self.write and not _is_link_to(self.root / link_path, f"../{unit}"):
                    self._replace_with_link(self.root / link_path, f"../{unit}")
        # Links a layer ships into a .wants/ directory itself (e.g. a template's instance).
        for path, output in outputs.items():
            directory, _, unit = path.removeprefix(UNIT_DIR + "/").rpartition("/")
            shipped = output.entry.type == "link" and directory.endswith((".wants", ".requires"))
            if shipped and "/" not in directory and directory not in wanted.get(unit, ()):
                wanted[unit] = (*wanted.get(unit, ()), directory)
        return {unit: tuple(sorted(targets)) for unit, targets in wanted.items()}

    def _generated(self, path: str, entry: Entry) -> Output:
        cached = self.cache.get(path)
        if cached is not None and cached.entry == entry:
            return cached
        return Output(["generated"], entry, "", "generated", GENERATED_ORIGIN)

    def _remove(self, stale: list[str]) -> None:
        if not self.write:
            return
        for path in sorted(stale, reverse=True):  # children before their directories
            target = self.root / path
            if target.is_dir() and not target.is_symlink():
                try:
                    target.rmdir()
                except OSError:
                    continue
            elif os.path.lexists(target):
                target.unlink()


def _source_again(path: str, output: Output) -> Source | None:
    """The source of an output as it is now, if it is still the same kind of thing."""
    link = output.kind == "link"
    try:
        st = os.stat(output.source, follow_symlinks=not link)
    except FileNotFoundError:
        return None
    if (stat.S_ISLNK(st.st_mode) if link else stat.S_ISREG(st.st_mode)) is False:
        return None
    stamp_now = (st.st_mtime_ns, st.st_size, st.st_ino, st.st_mode)
    kind: Kind = "link" if link else "template" if output.kind == "template" else "file"
    return Source(path, Path(output.source), kind, output.origin, stamp_now)


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
