"""Build stage: write the image a plan describes, rootless, and check it before it takes the output's name.

``assemble.build_image`` writes the table, then each filesystem (``filesystems``: one handler per kind, run at
the same time), then raw writes; ``verify`` reads the result back with independent readers; ``manifest``
records what went in. Imports ``plan``, ``fetch`` (blob types), ``inspect`` and the shared modules.
"""
