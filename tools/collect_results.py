"""Assemble benchmarks/RESULTS.md: the headline figures (benchmarks/results/HEADLINE.md) followed by
every area's measured results (benchmarks/results/*.md), headings demoted one level."""
from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ORDER = ["curation", "curation_inputs", "report", "backbone", "pretrain", "synth", "heads", "probe", "main_job"]


def main() -> None:
    results = ROOT / "benchmarks" / "results"
    parts = [(results / "HEADLINE.md").read_text().rstrip() + "\n"]
    files = {p.stem: p for p in results.glob("*.md") if p.stem != "HEADLINE"}
    for stem in ORDER + sorted(set(files) - set(ORDER)):
        if stem in files:
            text = files[stem].read_text()
            text = "\n".join("#" + line if line.startswith("#") else line for line in text.splitlines())
            parts.append(f"\n<!-- from benchmarks/results/{stem}.md -->\n{text.rstrip()}\n")
    (ROOT / "benchmarks" / "RESULTS.md").write_text("\n".join(parts))


if __name__ == "__main__":
    main()
