"""Kernel mechanisms that act on the machine model (mm/vmalloc.c, the set_memory engine, text patching)."""
