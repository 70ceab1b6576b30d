"""``python -m simrl``: the same command line as the ``simrl`` console script."""

from simrl.cli.main import main

if __name__ == "__main__":
    main()
