"""croft's benchmark: the build, and deploys side by side with rsync, Ansible and pyinfra.

    sudo .venv/bin/python bench/run.py [--machines 20] [--deploy-machines 5] [--skip-deploy]

Build: a synthetic site of 20 machines x 500 files (10% templates), the whole `croft build`
command timed cold, with nothing to do, after one plain file and after one template edited in
the layer every machine shares (so all 20 rebuild), after one machine's own file, and after a
variable in site.toml.

Deploy: the first --deploy-machines machines of that site brought up as real systemd machines
(the test fleet, inside a network namespace of their own), then the same tree deployed by each
tool into its own directory on them: first, again with nothing changed, and after one edited
file. `rsync -a` over an already open ControlMaster connection copies croft's built tree and is
the floor; Ansible (synchronize + template) and pyinfra (files.sync + files.template) start from
the site's layers and render the templates themselves, as their users would. Ratios are each
tool's time over croft's. The first deploy is timed once (on fresh machines); the no-op and the
edit are each the median of --runs.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from synthetic import SHARE, machine_names, make_site

VENV = Path(sys.executable).parent
CROFT = [str(VENV / "croft")]
SUBNET = "10.80.0"  # a network of its own: tests use 10.77-10.79
FLEET = "croftbench"
COMMON_FILE = f"layers/common/{SHARE}/common/d06/f300.txt"
COMMON_TEMPLATE = f"layers/common/{SHARE}/common/d00/t001.conf.j2"


# Every tool runs with its bytecode cached, as installed tools do: pip compiled Ansible's and
# pyinfra's; croft's own (an editable install) is compiled on its first run here.
os.environ.pop("PYTHONDONTWRITEBYTECODE", None)


def timed(argv: list[str], cwd: Path, env: dict[str, str] | None = None) -> float:
    start = time.perf_counter()
    result = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return elapsed


def median_of(runs: int, once: Callable[[], float]) -> float:
    return statistics.median(once() for _ in range(runs))


def append(path: Path, text: str) -> None:
    with open(path, "a") as stream:
        stream.write(text)


def line(label: str, seconds: float, note: str = "") -> None:
    print(f"  {label:<44} {seconds * 1000:9.0f} ms  {note}", flush=True)


# -- build ----------------------------------------------------------------------------------------


def bench_build(site: Path, runs: int) -> None:
    print(
        f"\ncroft build, {len(list((site / 'machines').glob('*.toml')))} machines x 500 files "
        f"(median of {runs}; target <= 100 ms)"
    )
    build = [*CROFT, "build"]
    source = Path(__file__).parents[1] / "src"
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(source)], check=True)
    shutil.rmtree(site / ".croft", ignore_errors=True)
    line("cold (nothing built yet)", timed(build, site))
    line("nothing to do", median_of(runs, lambda: timed(build, site)))

    def after_edit(path: str, text: str) -> Callable[[], float]:
        def once() -> float:
            append(site / path, text)
            return timed(build, site)

        return once

    line("one plain file edited (shared by all)", median_of(runs, after_edit(COMMON_FILE, "edit\n")))
    os.environ["CROFT_BUILD_SERVER"] = "0"
    cold = median_of(runs, after_edit(COMMON_TEMPLATE, "# a\n"))
    line("one template edited, without the build server", cold)
    del os.environ["CROFT_BUILD_SERVER"]
    after_edit(COMMON_TEMPLATE, "# starts the server\n")()
    line("one template edited (shared by all)", median_of(runs, after_edit(COMMON_TEMPLATE, "# edit\n")))
    own = f"machines/m03/{SHARE}/m03/d00/f010.txt"
    for path in (COMMON_FILE, COMMON_TEMPLATE, own):
        assert (site / path).is_file(), path  # an edit, not a new file
    line("one machine's own file edited", median_of(runs, after_edit(own, "edit\n")))

    def vars_edit() -> float:
        toml = site / "site.toml"
        text = toml.read_text()
        port = int(text.split("port = ")[1].split()[0])
        toml.write_text(text.replace(f"port = {port}", f"port = {port + 1}"))
        return timed(build, site)

    line("a variable every template reads (site.toml)", median_of(runs, vars_edit), "(re-renders 1,000)")
    subprocess.run(["pkill", "-f", f"croft.build.warm {site / '.croft'}"], check=False)


# -- deploy ---------------------------------------------------------------------------------------


@contextmanager
def fleet(site: Path) -> Iterator[dict[str, str]]:
    """The site's machines as a running fleet: name -> address."""
    from croft.fleet import fleet as fleets
    from croft.site.load import load_site

    fleets.down(FLEET)
    up = fleets.up(load_site(site), FLEET)
    try:
        yield {name: container.address for name, container in up.containers.items()}
    finally:
        up.down()


class Tools:
    """How each tool deploys the site to the fleet, as one whole command each."""

    def __init__(self, site: Path, hosts: dict[str, str], work: Path) -> None:
        from croft.fleet.rootfs import ssh_key

        self.site = site
        self.hosts = hosts
        self.work = work
        self.key = str(ssh_key())
        self.env = {**os.environ, "CROFT_SSH_KEY": self.key}
        self.control = work / "ssh"
        self.control.mkdir()
        self.ssh_options = [
            "-i",
            self.key,
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "LogLevel=ERROR",
            "-o",
            "BatchMode=yes",
        ]
        self._write_ansible()
        self._write_pyinfra()

    # croft
    def croft(self) -> float:
        return timed([*CROFT, "deploy"], self.site, self.env)

    # rsync: croft's built tree, one ControlMaster connection per host opened beforehand
    def open_masters(self) -> None:
        for address in self.hosts.values():
            subprocess.run(
                [
                    "ssh",
                    *self.ssh_options,
                    "-o",
                    f"ControlPath={self.control}/%h",
                    "-o",
                    "ControlMaster=yes",
                    "-o",
                    "ControlPersist=600",
                    "-fN",
                    f"root@{address}",
                ],
                check=True,
            )

    def rsync(self) -> float:
        shell = f"ssh {' '.join(self.ssh_options)} -o ControlPath={self.control}/%h"

        def one(name: str, address: str) -> None:
            subprocess.run(
                [
                    "rsync",
                    "-a",
                    "--delete",
                    "--mkpath",
                    "-e",
                    shell,
                    f"{self.site}/.croft/build/{name}/root/usr/local/",
                    f"root@{address}:/usr/local/bench-rsync/",
                ],
                check=True,
            )

        start = time.perf_counter()
        with ThreadPoolExecutor(len(self.hosts)) as pool:
            list(pool.map(one, self.hosts, self.hosts.values()))
        return time.perf_counter() - start

    # Ansible: synchronize each layer, then template each template
    def _templates(self, name: str, layers: list[str]) -> list[dict[str, str]]:
        found = []
        for tree in [*(self.site / "layers" / layer for layer in layers), self.site / "machines" / name]:
            for src in sorted(tree.rglob("*.j2")):
                rel = src.relative_to(tree / "usr/local")
                found.append({"src": str(src), "dest": str(Path("/usr/local/bench-{tool}") / rel)[:-3]})
        return found

    def _machine_vars(self, name: str) -> dict[str, object]:
        toml = (self.site / "machines" / f"{name}.toml").read_text()
        layers = json.loads(toml.split("layers = ")[1].splitlines()[0])
        facts = json.loads((self.site / "facts" / f"{name}.json").read_text())
        return {
            "layers": layers,
            "machine": {"name": name, "address": self.hosts[name]},
            "facts": facts,
            "port": int((self.site / "site.toml").read_text().split("port = ")[1].split()[0]),
            "peers": ["10.0.0.1", "10.0.0.2", "10.0.0.3"],
            "role": layers[1],
        }

    def _write_ansible(self) -> None:
        directory = self.work / "ansible"
        (directory / "host_vars").mkdir(parents=True)
        inventory = {"all": {"hosts": {name: {"ansible_host": a} for name, a in self.hosts.items()}}}
        (directory / "inventory.json").write_text(json.dumps(inventory))
        for name in self.hosts:
            data = self._machine_vars(name)
            data["trees"] = [f"{self.site}/layers/{layer}/usr/local/" for layer in data["layers"]]  # type: ignore[attr-defined]
            data["trees"].append(f"{self.site}/machines/{name}/usr/local/")  # type: ignore[attr-defined]
            data["templates"] = [
                {k: v.format(tool="ansible") for k, v in t.items()}
                for t in self._templates(name, data["layers"])  # type: ignore[arg-type]
            ]
            (directory / "host_vars" / f"{name}.json").write_text(json.dumps(data))
        (directory / "site.yml").write_text(
            "- hosts: all\n"
            "  gather_facts: false\n"
            "  tasks:\n"
            "    - name: files\n"
            "      ansible.posix.synchronize:\n"
            "        src: '{{ item }}'\n"
            "        dest: /usr/local/bench-ansible/\n"
            "        rsync_opts: ['--exclude=*.j2']\n"
            "      loop: '{{ trees }}'\n"
            "    - name: templates\n"
            "      ansible.builtin.template:\n"
            "        src: '{{ item.src }}'\n"
            "        dest: '{{ item.dest }}'\n"
            "      loop: '{{ templates }}'\n"
        )
        (directory / "ansible.cfg").write_text(
            "[defaults]\n"
            f"forks = {max(len(self.hosts), 5)}\n"
            "host_key_checking = False\n"
            "interpreter_python = /usr/bin/python3\n"
            "remote_user = root\n"
            f"private_key_file = {self.key}\n"
            "[ssh_connection]\n"
            "pipelining = True\n"
            # Ansible's own ControlPersist, kept warm between its runs as croft's is.
            f"control_path_dir = {self.work}/ansible-cp\n"
            "ssh_args = -o ControlMaster=auto -o ControlPersist=600s -o UserKnownHostsFile=/dev/null\n"
        )

    def ansible(self) -> float:
        directory = self.work / "ansible"
        env = {**os.environ, "ANSIBLE_CONFIG": str(directory / "ansible.cfg")}
        return timed([str(VENV / "ansible-playbook"), "-i", "inventory.json", "site.yml"], directory, env)

    # pyinfra: files.sync each layer (templates excluded), files.template each template
    def _write_pyinfra(self) -> None:
        directory = self.work / "pyinfra"
        directory.mkdir()
        hosts = []
        for name, address in self.hosts.items():
            data = self._machine_vars(name)
            data["templates"] = [
                {k: v.format(tool="pyinfra") for k, v in t.items()}
                for t in self._templates(name, data["layers"])  # type: ignore[arg-type]
            ]
            data["trees"] = [
                *(f"{self.site}/layers/{layer}/usr/local" for layer in data["layers"]),  # type: ignore[attr-defined]
                f"{self.site}/machines/{name}/usr/local",
            ]
            data.update(
                ssh_hostname=address,
                ssh_user="root",
                ssh_key=self.key,
                ssh_strict_host_key_checking="no",
                ssh_known_hosts_file="/dev/null",
            )
            hosts.append((name, data))
        (directory / "inventory.py").write_text(f"hosts = {hosts!r}\n")
        (directory / "deploy.py").write_text(
            "from pyinfra import host\n"
            "from pyinfra.operations import files\n\n"
            "for tree in host.data.trees:\n"
            "    files.sync(name=f'sync {tree}', src=tree, dest='/usr/local/bench-pyinfra',\n"
            "               exclude='*.j2', delete=False)\n"
            "for template in host.data.templates:\n"
            "    files.template(name=f\"template {template['dest']}\", src=template['src'],\n"
            "                   dest=template['dest'], machine=host.data.machine, facts=host.data.facts,\n"
            "                   port=host.data.port, peers=host.data.peers, role=host.data.role)\n"
        )

    # croft deploy --watch: from a saved edit to its content on the machine
    def watch(self, runs: int) -> float:
        """Median seconds from saving an edit to the new content being served on one machine,
        with `croft deploy --watch` running (edit, then poll the file over SSH)."""
        name, address = next(iter(self.hosts.items()))
        remote = "/" + COMMON_FILE.split("/", 2)[2]
        ssh = ["ssh", *self.ssh_options, "-o", f"ControlPath={self.control}/%h", f"root@{address}"]
        watcher = subprocess.Popen(
            [*CROFT, "deploy", "--watch", name], cwd=self.site, env=self.env,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        try:
            assert watcher.stdout is not None
            for text in watcher.stdout:  # it deploys once, then watches: its outcome's row
                if text.startswith(f"{name} "):
                    break
            delays = []
            for run in range(runs):
                marker = f"watched edit {run} {time.time()}"
                time.sleep(0.5)  # between saves, as someone editing
                start = time.perf_counter()
                append(self.site / COMMON_FILE, marker + "\n")
                cat = [*ssh, "cat", remote]
                while marker not in subprocess.run(cat, capture_output=True, text=True).stdout:
                    if time.perf_counter() - start > 30:
                        raise SystemExit("croft deploy --watch did not deploy an edit within 30 s")
                delays.append(time.perf_counter() - start)
            return statistics.median(delays)
        finally:
            watcher.terminate()
            watcher.wait()

    def pyinfra(self) -> float:
        directory = self.work / "pyinfra"
        return timed(
            [str(VENV / "pyinfra"), "-y", "--parallel", str(len(self.hosts)), "inventory.py", "deploy.py"],
            directory,
        )


def bench_deploy(site: Path, runs: int, tools: list[str]) -> None:
    with fleet(site) as hosts, tempfile.TemporaryDirectory(prefix="croft-bench-") as tmp:
        print(f"\ndeploy to {len(hosts)} real systemd machines x 500 files (no-op: median of {runs})")
        subprocess.run(
            [*CROFT, "facts"],
            cwd=site,
            check=True,
            capture_output=True,
            env={**os.environ, "CROFT_SSH_KEY": _key()},
        )
        subprocess.run([*CROFT, "build"], cwd=site, check=True, capture_output=True)
        bench = Tools(site, hosts, Path(tmp))
        bench.open_masters()
        deploys = {
            "croft": bench.croft,
            "rsync": bench.rsync,
            "ansible": bench.ansible,
            "pyinfra": bench.pyinfra,
        }

        def run(tool: str) -> float:
            # Each deploy starts on idle machines, as after someone's edit: what a tool leaves
            # to do after it answered (croft prunes generations) is done by then.
            time.sleep(1)
            return deploys[tool]()

        results: dict[str, dict[str, float]] = {}
        for tool in tools:
            # Each tool's three phases back to back, so that its connections are as warm for the
            # edit as for the no-op (a long run of another tool outlives ControlPersist).
            first = run(tool)
            noop = median_of(runs, functools.partial(run, tool))

            def edit_once(tool: str = tool) -> float:
                append(site / COMMON_FILE, f"edited for {tool} {time.time()}\n")
                if tool == "rsync":  # the floor copies croft's built tree: build it first, untimed
                    subprocess.run([*CROFT, "build"], cwd=site, check=True, capture_output=True)
                return run(tool)

            # Ansible's and pyinfra's minutes dwarf the noise: they edit once.
            edit = median_of(runs if tool in ("croft", "rsync") else 1, edit_once)
            results[tool] = {"first": first, "no-op": noop, "one edit": edit}
            print(
                f"  {tool}: first {first * 1000:.0f} ms, no-op {noop * 1000:.0f} ms, "
                f"one edit {edit * 1000:.0f} ms",
                flush=True,
            )
        print(f"\n  {'':<10}" + "".join(f"{phase:>22}" for phase in ("first", "no-op", "one edit")))
        for tool in tools:
            cells = []
            for phase in ("first", "no-op", "one edit"):
                seconds = results[tool][phase]
                ratio = seconds / results["croft"][phase] if "croft" in results else float("nan")
                cells.append(f"{seconds * 1000:>9.0f} ms {ratio:>6.2f}x")
            print(f"  {tool:<10}" + "".join(f"{cell:>22}" for cell in cells))
        print("  (ratio: the tool's time over croft's; rsync is the floor: a copy, no rendering, no units)")
        if "croft" in tools:
            watched = bench.watch(runs)
            live = f"saved edit -> live in {watched * 1000:.0f} ms (target 1 s)"
            print(f"\n  croft deploy --watch, one machine: {live}")
        if "croft" in results and "rsync" in results:
            # croft against the floor, the targets' way round: croft's time over rsync's.
            over = {phase: results["croft"][phase] / results["rsync"][phase] for phase in results["croft"]}
            print(
                f"\n  croft / rsync: first {over['first']:.2f}x (target 2x), no-op {over['no-op']:.2f}x "
                f"(target 1.3x), one file changed {over['one edit']:.2f}x (target 1.3x)"
            )


def _key() -> str:
    from croft.fleet.rootfs import ssh_key

    return str(ssh_key())


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--machines", type=int, default=20, help="machines in the build benchmark")
    parser.add_argument("--deploy-machines", type=int, default=5, help="machines the deploy benchmark boots")
    parser.add_argument("--runs", type=int, default=5, help="runs per median")
    parser.add_argument("--skip-deploy", action="store_true")
    parser.add_argument("--tools", default="croft,rsync,ansible,pyinfra")
    args = parser.parse_args()
    if not args.skip_deploy and os.geteuid() != 0:
        raise SystemExit("the deploy benchmark boots containers: run it as root (or pass --skip-deploy)")
    # One directory for both sites, removed at the end: on this development machine's ext4 (no
    # journal), creating files is several times slower for minutes after many were deleted
    # (the allocator skips recently deleted inodes), and the deploys would pay for the build's.
    with tempfile.TemporaryDirectory(prefix="croft-bench-site-") as tmp:
        site = make_site(Path(tmp) / "build-site", machines=args.machines, subnet=SUBNET)
        bench_build(site, args.runs)
        if args.skip_deploy:
            return
        site = make_site(Path(tmp) / "site", machines=args.deploy_machines, subnet=SUBNET)
        for name in machine_names(args.deploy_machines):
            (site / "facts" / f"{name}.json").unlink()  # gathered from the real machines
        bench_deploy(site, args.runs, args.tools.split(","))


if __name__ == "__main__":
    main()
