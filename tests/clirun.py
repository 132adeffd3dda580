"""Running the CLI from tests: real ``python -m boot2ipxe`` processes, or many forked from one warm interpreter.

``run_forked`` exists for speed. Starting an interpreter and importing jsonschema costs ~0.4 s here, which
for ~100 runs would dominate the suite; forking from one interpreter that has imported the package already
("zygote") costs a few milliseconds. Each child still is its own process: it runs the ``boot2ipxe``
module as ``__main__`` exactly as ``python -m`` does, with its own stdout, stderr and exit status, and
an uncaught exception prints its traceback and exits 1 as Python itself would.
``test_forked_runs_behave_like_python_m`` (in test_cli_specs.py) checks both ways give the same results.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# No real mirror: placeholders resolve to a port nothing listens on, and the spec commands never fetch.
MIRROR = ["--mirror", "debian=http://127.0.0.1:9/debian"]


@dataclass(frozen=True)
class Run:
    returncode: int
    stdout: str
    stderr: str

    @property
    def err_lines(self) -> list[str]:
        return self.stderr.splitlines()


def isolated_env(tmp: Path) -> dict[str, str]:
    """The environment minus anything that could configure a mirror, with an empty config directory."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BOOT2IPXE_")}
    env["XDG_CONFIG_HOME"] = str(tmp)
    env["PYTHONPATH"] = str(ROOT)
    return env


def run_cli(args: list[str], env: dict[str, str], cwd: Path = ROOT) -> Run:
    """A real ``python -m boot2ipxe ARGS`` process."""
    proc = subprocess.run(
        [sys.executable, "-m", "boot2ipxe", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=60
    )
    return Run(proc.returncode, proc.stdout, proc.stderr)


# Runs in a fresh interpreter: reads a JSON list of [argv, stdout file, stderr file] and forks one child
# per entry (a few at a time); prints the exit statuses as a JSON list.
ZYGOTE = r"""
import json, os, runpy, sys, traceback
import boot2ipxe.cli.parser, boot2ipxe.cli, jinja2.sandbox
boot2ipxe.cli.parser.build_parser()  # imports every command module: the import cost every child shares
WORKERS, MODULE = int(sys.argv[1]), sys.argv[2]

def child(argv, out, err):
    for fd, name in ((1, out), (2, err)):
        os.dup2(os.open(name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644), fd)
    sys.argv = [MODULE, *argv]
    code = 0
    try:
        runpy.run_module(MODULE, run_name="__main__", alter_sys=True)
    except SystemExit as exc:
        if exc.code is None or isinstance(exc.code, int):
            code = exc.code or 0
        else:
            print(exc.code, file=sys.stderr)
            code = 1
    except BaseException:
        traceback.print_exc()
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)

jobs = json.load(sys.stdin)
status = [None] * len(jobs)
running = {}
for index, (argv, out, err) in enumerate(jobs):
    if len(running) >= WORKERS:
        pid, raw = os.wait()
        status[running.pop(pid)] = os.waitstatus_to_exitcode(raw)
    pid = os.fork()
    if pid == 0:
        child(argv, out, err)
    running[pid] = index
while running:
    pid, raw = os.wait()
    status[running.pop(pid)] = os.waitstatus_to_exitcode(raw)
print(json.dumps(status))
"""


def run_forked(argvs: list[list[str]], env: dict[str, str], scratch: Path, module: str = "boot2ipxe") -> list[Run]:
    """``python -m MODULE ARGV`` for each argv, each in its own process forked from one warm interpreter."""
    jobs = [[argv, str(scratch / f"{i}.out"), str(scratch / f"{i}.err")] for i, argv in enumerate(argvs)]
    workers = str(max(2, os.cpu_count() or 2))
    zygote = subprocess.run(
        [sys.executable, "-c", ZYGOTE, workers, module],
        input=json.dumps(jobs),
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    codes = json.loads(zygote.stdout)
    return [
        Run(code, Path(out).read_text(errors="replace"), Path(err).read_text(errors="replace"))
        for code, (_, out, err) in zip(codes, jobs, strict=True)
    ]
