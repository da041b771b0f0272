"""The doctor's report as lines of text: each stage with its mark, then the verdict."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.text import Text

    from servepath.netdiag.doctor import DoctorReport


_MARK = {
    "ok": ("✔", "green"),
    "warn": ("!", "yellow"),
    "fail": ("✘", "bold red"),
    "skip": ("-", "dim"),
}


def doctor_lines(report: DoctorReport) -> list[Text]:
    """One line per stage with its mark, then the verdict: cause, meaning, owner, fix.

    Every piece of data goes in as plain text (rich.Text never reads markup), so an IPv6
    address or a server's error page prints as it is.
    """
    from rich.text import Text

    width = max(len(s.name) for s in report.stages)
    lines = [Text(f"servepath doctor {report.url}", style="bold")]
    for stage in report.stages:
        mark, style = _MARK[stage.status]
        line = Text()
        line.append(f" {mark} ", style=style)
        line.append(f"{stage.name:<{width}}  ", style="bold" if stage.status == "fail" else "")
        line.append(stage.summary, style="dim" if stage.status == "skip" else "")
        lines.append(line)
    lines.append(Text())
    e = report.explanation
    if report.ok:
        lines.append(Text(f"healthy: {e.meaning} ({report.elapsed_s:.2f}s)", style="bold green"))
        warnings = [s.name for s in report.stages if s.status == "warn"]
        if warnings:
            lines.append(Text(f"warnings in: {', '.join(warnings)}", style="yellow"))
        return lines + _warning_lines(report)
    lines.append(
        Text(f"broken at: {report.failed_stage}   cause: {report.cause}", style="bold red")
    )
    lines.append(Text(f"what it means: {e.meaning}"))
    lines.append(Text(f"who fixes it: {e.owner}"))
    if e.fix:
        lines.append(Text("fix:"))
        lines.extend(Text(f"  {line}") for line in e.fix)
    lines.append(Text(f"({report.elapsed_s:.2f}s)", style="dim"))
    return lines + _warning_lines(report)


def _warning_lines(report: DoctorReport) -> list[Text]:
    """The causes the warning stages name, each with its owner and fix."""
    from rich.text import Text

    lines: list[Text] = []
    for w in report.warnings:
        lines.append(Text())
        lines.append(Text(f"warning at: {w.stage}   cause: {w.cause}", style="bold yellow"))
        lines.append(Text(f"what it means: {w.explanation.meaning}"))
        lines.append(Text(f"who fixes it: {w.explanation.owner}"))
        if w.explanation.fix:
            lines.append(Text("fix:"))
            lines.extend(Text(f"  {line}") for line in w.explanation.fix)
    return lines
