"""The thin click layer over host_tools. Each command group lives in its own module."""
