"""Spec stage: a platform spec file → a frozen, typed model (``model.Spec``), with every non-geometric rule checked.

YAML is read with limits (``yamlio``), checked against the JSON Schema (``schema``), then turned into the model
with its names, references, sources, mirrors and chain checked (``load``). Every finding is a ``problems.Problem``
located by file and key path. Imports only the shared modules and ``formats``.
"""
