"""On-disk formats, pure: readers and writers of bytes that every stage shares.

FAT geometry and boot sectors (``fat``) and a bounded FAT reader (``fatfs``), partition tables (``table``),
sparse files and bmaptool's block maps (``sparse``), iPXE's script language (``ipxe_script``). No module here
knows about specs, plans or the command line; they import only the shared modules (``errors``, ``units``).
"""
