"""The ``khnet`` command line: thin Typer commands over the library. Nothing in khnet imports this."""
