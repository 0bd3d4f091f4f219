#!/usr/bin/env python3
"""Prints whether an ELF executable is a static build or dynamically linked (has PT_INTERP)."""
import struct
import sys

data = open(sys.argv[1], "rb").read(1 << 16)
phoff, = struct.unpack_from("<Q", data, 0x20)
phentsize, phnum = struct.unpack_from("<HH", data, 0x36)
types = [struct.unpack_from("<I", data, phoff + i * phentsize)[0] for i in range(phnum)]
print("dynamically linked build" if 3 in types else "static build")
