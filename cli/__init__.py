"""The ``simrl`` command line (installed as the package ``simrl.cli``; see DESIGN.md §3)."""
