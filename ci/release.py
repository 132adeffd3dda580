#!/usr/bin/env python3
"""The release job: ``ci/release.py PLATFORM...`` creates the GitLab release of ``$CI_COMMIT_TAG``.

Its assets link each build job's artifacts (image .zst, .bmap, .sha256, manifest), reachable at stable
``/-/releases/TAG/downloads/FILE`` addresses; build jobs keep their artifacts forever on tags. Each build job
passes its id through a dotenv report (``BUILD_JOB_ID_<PLATFORM>``). It calls the Releases API with the job
token rather than using the ``release:`` keyword, which needs glab or release-cli in the job's image.

Standard library only: the job installs nothing but python3 and ca-certificates.
"""

from __future__ import annotations

import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pipeline import job_variable

ARTIFACTS = ((".img.zst", "image"), (".img.bmap", "other"), (".img.sha256", "other"), (".img.manifest.json", "other"))
REQUIRED = ("CI_API_V4_URL", "CI_PROJECT_ID", "CI_PROJECT_URL", "CI_COMMIT_TAG", "CI_JOB_TOKEN")


class ReleaseError(Exception):
    pass


def release_request(names: list[str], environ: dict[str, str], out: Path = Path("out")) -> dict[str, Any]:
    """The body of POST /projects/:id/releases."""
    missing = [v for v in REQUIRED if not environ.get(v)]
    if missing:
        raise ReleaseError(f"{', '.join(missing)} not set: this runs in GitLab's release job on a tag")
    tag, project_url = environ["CI_COMMIT_TAG"], environ["CI_PROJECT_URL"].rstrip("/")
    links, rows = [], []
    for name in names:
        job_id = environ.get(job_variable(name), "")
        if not job_id.isdigit():
            raise ReleaseError(f"{job_variable(name)} not set: the release job needs build:{name} (its dotenv report)")
        sha_file = out / f"{name}.img.sha256"
        try:
            sha256 = sha_file.read_text(encoding="utf-8").split()[0]
        except (OSError, IndexError):
            raise ReleaseError(f"{sha_file}: missing or empty: the release job needs build:{name}'s artifacts") from None
        rows.append(f"| {name} | `{sha256}` |")
        for suffix, link_type in ARTIFACTS:
            file = f"{name}{suffix}"
            links.append(
                {
                    "name": file,
                    "url": f"{project_url}/-/jobs/{job_id}/artifacts/raw/out/{urllib.parse.quote(file)}",
                    "direct_asset_path": f"/{file}",
                    "link_type": link_type,
                }
            )
    description = "\n".join(
        [
            f"Netboot base images built by boot2ipxe from `platforms/*.yaml` at {environ.get('CI_COMMIT_SHA', tag)}.",
            "",
            "| platform | sha256 of the uncompressed image |",
            "|---|---|",
            *rows,
            "",
            "Flash one: `bmaptool copy --bmap NAME.img.bmap NAME.img.zst /dev/sdX` (bmaptool decompresses zstd), or",
            "`zstd -d NAME.img.zst && sha256sum -c NAME.img.sha256 && bmaptool copy NAME.img /dev/sdX`.",
            "Make per-machine images with `boot2ipxe inject` (docs/gitlab-ci.md).",
        ]
    )
    return {"tag_name": tag, "name": f"boot2ipxe {tag}", "description": description, "assets": {"links": links}}


def create_release(body: dict[str, Any], environ: dict[str, str]) -> str:
    url = f"{environ['CI_API_V4_URL'].rstrip('/')}/projects/{urllib.parse.quote(environ['CI_PROJECT_ID'], safe='')}/releases"
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        method="POST",
        headers={"JOB-TOKEN": environ["CI_JOB_TOKEN"], "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            answer = json.load(response)
    except urllib.error.HTTPError as exc:
        detail = exc.read(2000).decode("utf-8", "replace").replace("\n", " ")
        hint = "; delete the release to make it again" if exc.code == 409 else ""
        raise ReleaseError(f"POST {url}: HTTP {exc.code}: {detail}{hint}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise ReleaseError(f"POST {url}: {getattr(exc, 'reason', exc)}") from None
    return str(answer.get("_links", {}).get("self") or answer.get("tag_name", body["tag_name"]))


def main(argv: list[str] | None = None) -> int:
    names = sys.argv[1:] if argv is None else argv
    if not names:
        print("usage: ci/release.py PLATFORM...", file=sys.stderr)
        return 2
    environ = dict(os.environ)
    try:
        body = release_request(names, environ)
        where = create_release(body, environ)
    except ReleaseError as exc:
        print(f"ci/release.py: {exc}", file=sys.stderr)
        return 1
    print(f"release {body['tag_name']}: {where}, {len(body['assets']['links'])} links")
    return 0


if __name__ == "__main__":
    sys.exit(main())
