"""The ``simrl`` command line (installed as the package ``simrl.cli``; see docs/design.md §3)."""
