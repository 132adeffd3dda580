"""Inject stage: per-machine images from a base image — the chain script with the machine's client certificate.

``script`` renders the machine's iPXE script; ``image`` finds iPXE in a base image (ours or a vendor's), copies it
sparsely and writes the changed FAT files, read back before the image is renamed into place. Imports ``pki``,
``inspect``, ``spec.model`` and the shared modules.
"""
