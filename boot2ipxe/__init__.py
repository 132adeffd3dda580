"""boot2ipxe: build netboot disk images from per-platform YAML specs.

The package is laid out by pipeline stage; each sub-package's docstring says what it owns and what it may
import (docs/ARCHITECTURE.md draws the whole picture)::

    spec → plan → fetch → inspect → build → pki → inject → server → cli

A stage imports the stages before it and the shared modules (``errors``, ``units``, ``files``, ``tools``,
``progress``, ``formats``), never a later stage.
"""

__version__ = "0.2.0"
