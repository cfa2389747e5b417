"""``python -m pretrain``: dispatch to the command-line interface."""
from humans.pretrain.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
