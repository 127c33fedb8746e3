"""Every command's flags, a module per command (parsers.py gathers them), all without torch."""
