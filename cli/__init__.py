"""The command line: argument parsing and printing only; every decision is made in core."""
