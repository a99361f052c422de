"""`scaling fit` and `scaling report` on the results folder of an adaptive study: its
target_flops is the default target (not 3x/10x/100x the largest budget), and its rounds and
stop are said after the answer and at the top of the report. The folder's files are read by
orchestrator/store/study.py; analysis is given plain numbers and text, it imports no orchestrator.
"""

from __future__ import annotations

import html
import os
from pathlib import Path

TITLE = "The adaptive study"


def study_of(source, *, rounds: bool = True):
    """The AdaptiveStudy of a results folder, None for a table file or a folder without one;
    rounds=False: its target alone (the rows are not read)."""
    if not isinstance(source, str) or not os.path.isdir(source):
        return None
    from scaling_orchestrator.orchestrator.store.study import adaptive_study  # only for a folder

    return adaptive_study(source, None if rounds else {})


def default_targets(args) -> tuple[float, ...]:
    """--target-flops as given, else the study's target_flops, else () (analysis' default)."""
    if args.target_flops:
        return tuple(args.target_flops)
    study = study_of(args.source, rounds=False)
    return (study.target_flops,) if study else ()


def say(source) -> None:
    """The study's lines on stdout, after the fit's summary."""
    study = study_of(source)
    if study:
        print("\n".join(study.lines()))


def add_to_report(paths: dict, source) -> None:
    """The study's lines as a section right under the report's title (Markdown and HTML)."""
    study = study_of(source)
    if not study:
        return
    head, *rest = study.lines()
    items = [head, *(line.strip() for line in rest)]
    md = Path(paths["markdown"])
    title, _, body = md.read_text(encoding="utf-8").partition("\n\n")
    section = f"## {TITLE}\n\n" + "\n".join(f"- {i}" for i in items)
    md.write_text(f"{title}\n\n{section}\n\n{body}", encoding="utf-8")
    page = Path(paths["html"])
    text = page.read_text(encoding="utf-8")
    block = (f"<h2>{TITLE}</h2><ul>" + "".join(f"<li>{html.escape(i)}</li>" for i in items) + "</ul>")
    cut = text.find("</h1>")
    cut = cut + len("</h1>") if cut >= 0 else text.find("<body>") + len("<body>")
    page.write_text(text[:cut] + "\n" + block + text[cut:], encoding="utf-8")
