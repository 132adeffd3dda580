"""boot2ipxe: build netboot disk images from per-platform YAML specs."""

__version__ = "0.1.0"
