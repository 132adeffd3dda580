"""A batch of machine images from one base: every machine checked before any image is written, then all or none.

:func:`prepare` loads every identity, renders every script and checks every output (distinct, not the base, not
something other than a regular file) before a byte is written; :func:`write_all` writes each image to a temporary
file beside its output and renames them into place only once all of them are complete and checked. A batch that
fails on its 30th machine leaves no image behind: the earlier ones, which hold keys, are removed with it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from boot2ipxe.errors import InputError
from boot2ipxe.files import check_output, json_text, pending_file, write_atomic
from boot2ipxe.inject.image import check_room, read_base_fat, write_machine_image
from boot2ipxe.pki import check_name
from boot2ipxe.pki.certs import ClientIdentity


@dataclass(frozen=True)
class Machine:
    """One image of the batch, ready to write: its files hold the script (and with it, the key)."""

    name: str | None
    output: Path
    identity: ClientIdentity | None
    writes: Mapping[int, Mapping[str, bytes]]  # FAT offset in the image -> path -> bytes


def outputs_for(pattern: str, names: Sequence[str | None]) -> list[Path]:
    """Each machine's output: ``pattern`` with ``{name}`` replaced, or for several machines, NAME.img in a directory."""
    if len(names) == 1:
        return [Path(pattern.replace("{name}", names[0] or "machine"))]
    if "{name}" in pattern:
        return [Path(pattern.replace("{name}", str(name))) for name in names]
    directory = Path(pattern)
    if not directory.is_dir():
        raise InputError(f"-o {pattern}: with several --name, give a path containing {{name}} or an existing directory")
    return [directory / f"{name}.img" for name in names]


def prepare(
    base: Path,
    names: Sequence[str | None],
    outputs: Sequence[Path],
    identity_of: Callable[[str | None], ClientIdentity | None],
    writes_of: Callable[[ClientIdentity | None], Mapping[int, Mapping[str, bytes]]],
) -> list[Machine]:
    """Every machine of the batch, checked: names valid and distinct, identities loadable, outputs distinct, usable
    and not the base. Raises InputError naming the first problem; nothing is written."""
    seen: set[str] = set()
    for name in names:
        if name is not None:
            check_name(name)
            if name in seen:
                raise InputError(f"--name {name}: given twice")
            seen.add(name)
    base_real = base.resolve()
    targets: dict[Path, Path] = {}
    for output in outputs:
        check_output(output)
        real = output.resolve()
        if real == base_real:
            raise InputError(f"{output}: is the base image; choose another output path")
        for sidecar in (real, real.with_name(real.name + ".manifest.json")):
            if sidecar in targets:
                raise InputError(f"{output}: two machines would write {sidecar.name}; give each its own output")
            targets[sidecar] = output
    machines = []
    for name, output in zip(names, outputs, strict=True):
        identity = identity_of(name)
        machines.append(Machine(name, output, identity, writes_of(identity)))
    return machines


def write_all(
    machines: Sequence[Machine], base: Path, epoch: int, facts: Callable[[Machine], dict[str, Any]]
) -> list[dict[str, Any]]:
    """Write every image (with its OUT.manifest.json from ``facts``) or none; returns the manifests in order."""
    fats = {offset: read_base_fat(base, offset) for machine in machines for offset in machine.writes}
    for machine in machines:
        for offset, files in machine.writes.items():
            check_room(base, files, fats[offset])
    with contextlib.ExitStack() as stack:
        written = []
        for machine in machines:
            tmp = stack.enter_context(pending_file(machine.output))
            write_machine_image(base, tmp, machine.writes, epoch, fats)
            written.append(tmp)
        manifests = [facts(machine) for machine in machines]
        for machine, tmp, manifest in zip(machines, written, manifests, strict=True):
            tmp.replace(machine.output)
            write_atomic(machine.output.with_name(machine.output.name + ".manifest.json"), json_text(manifest).encode())
    return manifests
