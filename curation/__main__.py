"""``python -m curation``: see ``curation.cli``."""
from humans.curation.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
