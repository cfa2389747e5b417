"""Assemble benchmarks/RESULTS.md: the headline figures (benchmarks/results/HEADLINE.md) followed by
every area's measured results (benchmarks/results/*.md), headings demoted one level and links to
files beside them (other results pages, pictures) made relative to benchmarks/."""
from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LOCAL_LINK = re.compile(r"\]\(([\w.-]+\.(?:md|png|json))([)#])")  # ](file.md) ](file.png#x) in results/
ORDER = ["curation", "curation_inputs", "report", "backbone", "pretrain", "synth", "heads", "probe", "main_job"]


def main() -> None:
    results = ROOT / "benchmarks" / "results"

    def relink(text: str) -> str:
        return LOCAL_LINK.sub(lambda m: f"](results/{m.group(1)}{m.group(2)}"
                              if (results / m.group(1)).exists() else m.group(0), text)

    parts = [relink((results / "HEADLINE.md").read_text()).rstrip() + "\n"]
    files = {p.stem: p for p in results.glob("*.md") if p.stem != "HEADLINE"}
    for stem in ORDER + sorted(set(files) - set(ORDER)):
        if stem in files:
            text = files[stem].read_text()
            text = "\n".join("#" + line if line.startswith("#") else line for line in text.splitlines())
            text = relink(text)
            parts.append(f"\n<!-- from benchmarks/results/{stem}.md -->\n{text.rstrip()}\n")
    (ROOT / "benchmarks" / "RESULTS.md").write_text("\n".join(parts))


if __name__ == "__main__":
    main()
