"""Host tools behind the `medsentry` command. The library never imports click;
host_tools.cli holds the thin command-line layer."""
