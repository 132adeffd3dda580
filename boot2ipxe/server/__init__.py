"""Server stage: what the boot server sends each machine — ``files/<fingerprint>/boot.ipxe`` for boot2container
and its secrets (``b2c``). Imports ``pki``, ``inject.script`` and the shared modules.
"""
