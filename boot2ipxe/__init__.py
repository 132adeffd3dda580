"""boot2ipxe: build netboot disk images from per-platform YAML specs."""

__version__ = "0.1.0"

# typing.TYPE_CHECKING without importing typing (mypy and ruff know the name): the modules a warm build runs
# import nothing they do not use at run time, since start-up is most of a warm build's time.
TYPE_CHECKING = False
