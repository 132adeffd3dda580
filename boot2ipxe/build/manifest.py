"""``IMAGE.manifest.json``: what an image was built from and what it holds, for audits and reproducibility."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from boot2ipxe import __version__
from boot2ipxe.plan.layout import Plan
from boot2ipxe.spec.model import Blob

MANIFEST_FORMAT = "boot2ipxe-manifest/1"


def used_sources(plan: Plan) -> list[str]:
    """The sources a file or raw write of the plan takes, sorted."""
    return sorted({f.source for p in plan.partitions for f in p.files if f.source} | {r.source for r in plan.raw})


def manifest(plan: Plan, blobs: Mapping[str, Blob], epoch: int, image_sha256: str) -> dict[str, Any]:
    spec = plan.spec
    files = []
    for p in plan.partitions:
        for f in sorted(p.files, key=lambda f: f.dest.casefold()):
            if f.data is not None:
                digest, size = hashlib.sha256(f.data).hexdigest(), len(f.data)
            else:
                blob = blobs[f.source or ""]
                digest, size = blob.sha256, blob.size
            files.append(
                {"partition": p.name, "dest": f.dest, "size": size, "sha256": digest, "kind": f.kind, "source": f.source}
            )
    return {
        "format": MANIFEST_FORMAT,
        "tool": {"name": "boot2ipxe", "version": __version__},
        "spec": {"name": spec.name, "file": spec.display_path, "sha256": spec.sha256},
        "image": {"sha256": image_sha256, "size": plan.size},
        "source_date_epoch": epoch,
        "sources": [
            {"id": sid, "sha256": blobs[sid].sha256, "size": blobs[sid].size, "origin": blobs[sid].origin}
            for sid in used_sources(plan)
        ],
        "files": files,
        "raw": [{"source": r.source, "offset": r.offset, "size": blobs[r.source].size} for r in plan.raw],
        "layout": plan.as_dict(),
    }
