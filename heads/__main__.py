"""``python -m heads``: dispatch to the command-line interface."""
from humans.heads.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
