"""Inspect stage: explain any disk image (ours or a vendor's) — table, filesystems, files, iPXE, boot chain.

Reads images only; ``build`` uses it to read its output back and ``inject`` to find iPXE in a base. Imports
``formats``, ``spec.model`` (partition type facts) and the shared modules.
"""
