"""The ``initlab`` command line: ``main.py`` wires the commands, one module per subcommand."""
