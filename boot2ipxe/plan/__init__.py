"""Plan stage: the spec model → every sector, geometry, rendered file and table byte, writing nothing.

``layout.make_plan`` is a pure function: partition extents, FAT and ext4 geometry, raw writes, file fit;
``templates`` renders the spec's Jinja2 files in a sandbox confined to the spec's tree; ``validate`` runs the
spec and plan stages together and reports every problem. Imports ``spec`` and the shared modules.
"""
