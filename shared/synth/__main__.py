"""``python -m shared.synth``: the synth command without the rest of the heads CLI."""
from humans.shared.synth.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
