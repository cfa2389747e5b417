"""``python -m curation.report {report,verify} ...``: the report commands without the rest of the CLI."""
from humans.curation.report.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
