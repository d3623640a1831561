"""Stands in for a TorchCodec built against another torch release: its native library fails to load."""

raise OSError("libtorchcodec_core.so: undefined symbol: _ZN3c1013MessageLogger (a build for another torch)")
