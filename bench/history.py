"""The benches' own history: every run of bench/train_step.py and bench/infer.py appends its commit, machine and
headline figures to bench/history.json, so a change that costs speed shows up next to the runs before it.

    python bench/history.py                         # the history as markdown tables
    python bench/history.py --bench infer           # one bench only
    python bench/history.py --update docs/speed.md  # rewrite the tables between the history markers of a page

A figure that falls by 10% or more against the latest earlier run of the same bench on the same kind of machine
is reported when the run is recorded (and marked in the table). Rates from different machines are not
compared: the machine (CPU model, cores) is part of every entry.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
from pathlib import Path
from typing import Any

HISTORY = Path(__file__).with_name("history.json")
REGRESSION = 0.10  # a figure this much worse than the run before it is flagged


def git(*args: str) -> str:
    root = Path(__file__).resolve().parent.parent
    try:
        return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return ""


def commit() -> str:
    """The short commit, with "+dirty" when tracked files differ from it (the figures are then not that commit's).
    The history file itself does not count: every recorded run changes it."""
    sha = git("rev-parse", "--short=7", "HEAD") or "unknown"
    changed = git("status", "--porcelain", "--untracked-files=no", "--", ".", f":!bench/{HISTORY.name}")
    return sha + ("+dirty" if changed else "")


def machine() -> str:
    """CPU model and the cores this process may use, e.g. "AMD EPYC, 2 cores"."""
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{model}, {len(os.sched_getaffinity(0))} cores"


def load(path: Path = HISTORY) -> list[dict[str, Any]]:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else []


def regressions(entry: dict[str, Any], earlier: list[dict[str, Any]]) -> list[str]:
    """Figures of `entry` at least REGRESSION worse than in the latest earlier entry of its bench and machine.
    `entry["higher_is_better"]` lists the figures where larger is better; the others (seconds, GiB) are smaller."""
    same = [e for e in earlier if e["bench"] == entry["bench"] and e["machine"] == entry["machine"]]
    if not same:
        return []
    before = same[-1]
    found = []
    for name, value in entry["figures"].items():
        old = before["figures"].get(name)
        if not isinstance(old, (int, float)) or not isinstance(value, (int, float)) or old <= 0:
            continue
        change = value / old - 1
        worse = -change if name in entry.get("higher_is_better", []) else change
        if worse >= REGRESSION:
            found.append(f"{name}: {value:g} vs {old:g} at {before['commit']} ({change:+.0%})")
    return found


def record(
    bench: str,
    figures: dict[str, float],
    higher_is_better: list[str],
    settings: dict[str, Any] | None = None,
    path: Path = HISTORY,
) -> list[str]:
    """Append one run to the history; returns (and the bench prints) the figures that slid by 10% or more."""
    entry = {
        "bench": bench,
        "commit": commit(),
        "date": datetime.date.today().isoformat(),
        "machine": machine(),
        "settings": settings or {},
        "figures": {name: round(value, 3) for name, value in figures.items()},
        "higher_is_better": higher_is_better,
    }
    history = load(path)
    slid = regressions(entry, history)
    entry["regressions"] = slid
    history.append(entry)
    path.write_text(json.dumps(history, indent=1) + "\n", encoding="utf-8")
    return slid


def markdown(history: list[dict[str, Any]], bench: str | None = None) -> str:
    """One table per bench: a row per run, a column per figure; a slide of 10% or more is marked with "↓"."""
    tables = []
    for name in dict.fromkeys(e["bench"] for e in history if bench in (None, e["bench"])):
        runs = [e for e in history if e["bench"] == name]
        columns = list(dict.fromkeys(f for e in runs for f in e["figures"]))
        lines = [
            f"`bench/{name}.py`:",
            "",
            "| date | commit | machine | " + " | ".join(columns) + " |",
            "| --- | --- | --- | " + " | ".join("---" for _ in columns) + " |",
        ]
        for e in runs:
            slid = {r.split(":", 1)[0] for r in e.get("regressions", [])}
            cells = [f"{e['figures'][c]:g}{' ↓' if c in slid else ''}" if c in e["figures"] else "" for c in columns]
            lines.append(f"| {e['date']} | {e['commit']} | {e['machine']} | " + " | ".join(cells) + " |")
        tables.append("\n".join(lines))
    return "\n\n".join(tables)


BEGIN, END = "<!-- bench history: begin (python bench/history.py --update) -->", "<!-- bench history: end -->"


def update_page(page: Path, history: list[dict[str, Any]]) -> None:
    """Replace what lies between the BEGIN and END markers of a markdown page with the history tables, so the page
    (docs/speed.md, README) shows the recorded runs without anyone copying numbers by hand."""
    text = page.read_text(encoding="utf-8")
    if text.count(BEGIN) != 1 or text.count(END) != 1 or text.index(BEGIN) > text.index(END):
        raise ValueError(f"{page}: needs one line {BEGIN!r} and, after it, one line {END!r}")
    head, rest = text.split(BEGIN, 1)
    tail = rest.split(END, 1)[1]
    page.write_text(f"{head}{BEGIN}\n{markdown(history)}\n{END}{tail}", encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bench", help="only this bench (train_step or infer)")
    parser.add_argument("--file", type=Path, default=HISTORY)
    parser.add_argument("--update", type=Path, help="a markdown page whose history markers get the tables")
    args = parser.parse_args()
    if args.update:
        update_page(args.update, load(args.file))
        print(f"updated the history tables in {args.update}")
        return
    print(markdown(load(args.file), args.bench))


if __name__ == "__main__":
    main()
