"""Everything the test suite needs that the machine's package manager does not install, so that the README's test
command works on a fresh machine::

    python tests/prepare.py    # quick when everything is there already

- the local Debian test mirror (``mirror.py``): the real packages the shipped specs and the tests pin;
- gitlab-ci-local (npm), when Node.js and npm are installed, into ``~/.cache/boot2ipxe-npm``: the tests run the
  GitLab CI pipeline with it (without Node.js they are skipped, saying so).

Everything is kept between runs under ``~/.cache``; each download is checked against its pin.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import mirror

GITLAB_CI_LOCAL = "4.73.0"  # 4.75.1 crashes on Node 20
NPM_PREFIX = Path.home() / ".cache" / "boot2ipxe-npm"


def gitlab_ci_local_binary() -> Path:
    return NPM_PREFIX / "node_modules" / ".bin" / "gitlab-ci-local"


def prepare_gitlab_ci_local() -> int:
    if shutil.which("node") is None or shutil.which("npm") is None:
        print("tests/prepare.py: Node.js/npm not installed: the gitlab-ci-local tests will be skipped", file=sys.stderr)
        return 0
    package = NPM_PREFIX / "node_modules" / "gitlab-ci-local" / "package.json"
    try:
        installed = json.loads(package.read_text(encoding="utf-8")).get("version")
    except (OSError, ValueError):
        installed = None
    if installed == GITLAB_CI_LOCAL:
        print(f"gitlab-ci-local {GITLAB_CI_LOCAL}: installed in {NPM_PREFIX}")
        return 0
    argv = ["npm", "install", "--prefix", str(NPM_PREFIX), "--no-audit", "--no-fund", "--loglevel=error"]
    result = subprocess.run([*argv, f"gitlab-ci-local@{GITLAB_CI_LOCAL}"], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        print(f"tests/prepare.py: npm install gitlab-ci-local failed:\n{result.stderr[-2000:]}", file=sys.stderr)
        return 1
    print(f"gitlab-ci-local {GITLAB_CI_LOCAL}: installed in {NPM_PREFIX}")
    return 0


def main() -> int:
    failed = mirror.prepare(mirror.mirror_dir())
    failed |= prepare_gitlab_ci_local()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
