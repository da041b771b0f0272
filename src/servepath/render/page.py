"""The shell every report page shares: one HTML file, inline CSS, no script, and a
Content-Security-Policy that lets the page load nothing at all (a hostile string that got
past escaping still could not fetch a thing)."""

from __future__ import annotations

from servepath.render.markup import esc

#: Nothing from anywhere: styles are inline, pictures are inline SVG.
CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"

_CSS = """
:root { --ok:#1a7f37; --warn:#9a6700; --fail:#cf222e; --skip:#6e7781; --ink:#1f2328;
  --muted:#59636e; --line:#d1d9e0; --panel:#f6f8fa; --bg:#ffffff;
  --s1:#0072b2; --s2:#e69f00; --s3:#009e73; --s4:#d55e00; --s5:#cc79a7; --s6:#56b4e9; }
* { box-sizing: border-box; }
body { margin:0; background:var(--bg); color:var(--ink);
  font:15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; }
main { max-width:1240px; margin:0 auto; padding:20px 20px 40px; }
header.top { display:flex; flex-wrap:wrap; align-items:center; gap:10px 16px;
  border-bottom:1px solid var(--line); padding-bottom:12px; margin-bottom:16px; }
header.top h1 { font-size:20px; margin:0; }
header.top .url { font-family:ui-monospace, "DejaVu Sans Mono", monospace; font-size:14px;
  overflow-wrap:anywhere; color:var(--muted); }
.badge { display:inline-block; padding:3px 10px; border-radius:999px; font-weight:700;
  font-size:13px; letter-spacing:.02em; border:2px solid currentColor; }
.badge.ok { color:var(--ok); } .badge.fail { color:var(--fail); } .badge.warn { color:var(--warn); }
h2 { font-size:17px; margin:28px 0 8px; }
p.lead { color:var(--muted); margin:4px 0 12px; }
.cards { display:grid; grid-template-columns:repeat(auto-fill, minmax(168px, 1fr)); gap:10px; }
.card { background:var(--panel); border:1px solid var(--line); border-radius:10px;
  padding:10px 12px; }
.card .k { font-size:12px; color:var(--muted); text-transform:uppercase; letter-spacing:.04em; }
.card .v { font-size:22px; font-weight:700; font-variant-numeric:tabular-nums; }
.card .v.fail { color:var(--fail); } .card .v.ok { color:var(--ok); }
.card .d { font-size:12px; color:var(--muted); }
.verdict { border:1px solid var(--line); border-left:6px solid var(--ok); border-radius:8px;
  padding:12px 16px; background:var(--panel); margin:16px 0; }
.verdict.fail { border-left-color:var(--fail); } .verdict.warn { border-left-color:var(--warn); }
.verdict h2 { margin:0 0 6px; }
.verdict dl { display:grid; grid-template-columns:max-content 1fr; gap:4px 14px; margin:8px 0; }
.verdict dt { color:var(--muted); } .verdict dd { margin:0; overflow-wrap:anywhere; }
pre, code { font-family:ui-monospace, "DejaVu Sans Mono", monospace; font-size:13px; }
pre { background:#fff; border:1px solid var(--line); border-radius:6px; padding:8px 10px;
  overflow-x:auto; white-space:pre-wrap; overflow-wrap:anywhere; margin:6px 0; }
figure { margin:12px 0 20px; }
figure svg { display:block; width:100%; height:auto; max-width:100%; }
figcaption { font-size:13px; color:var(--muted); margin-top:4px; }
.grid2 { display:grid; grid-template-columns:repeat(auto-fit, minmax(340px, 1fr)); gap:0 24px; }
.grid2 > * { min-width:0; }
table { border-collapse:collapse; width:100%; font-size:13.5px; margin:6px 0; }
th, td { text-align:left; padding:5px 8px; border-bottom:1px solid var(--line); vertical-align:top;
  overflow-wrap:break-word; }
div.table { overflow-x:auto; max-width:100%; }
th { background:var(--panel); font-weight:600; }
td.num, th.num { text-align:right; font-variant-numeric:tabular-nums; white-space:nowrap; }
tr.fail td { background:#ffebe9; font-weight:600; } tr.warn td { background:#fff8c5; }
tr.skip td { color:var(--muted); }
caption { text-align:left; font-weight:600; padding:4px 0; }
details { margin:6px 0; } summary { cursor:pointer; color:var(--s1); }
ul.notes { padding-left:20px; } ul.notes li.problem { color:var(--fail); }
ul.notes li.warning { color:var(--warn); }
.wide-only { display:block; } .narrow-only { display:none; }
footer { margin-top:32px; font-size:12px; color:var(--muted); border-top:1px solid var(--line);
  padding-top:8px; }
svg text { font-family:system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; }
.axis text { font-size:12px; fill:var(--muted); } .axis line, .axis path { stroke:var(--line); }
.axis .label { font-size:12px; fill:var(--ink); }
.legend text { font-size:12px; fill:var(--ink); }
@media (max-width: 640px) {
  main { padding:12px 12px 32px; }
  .wide-only { display:none; } .narrow-only { display:block; }
  .card .v { font-size:19px; }
  .grid2 { grid-template-columns:1fr; }
  th, td { padding:4px 5px; font-size:12.5px; }
  .wide-cell { display:none; }
}
.nowrap { white-space:nowrap; overflow-wrap:normal; }
ul.legend { list-style:none; padding:0; margin:4px 0; display:flex; flex-wrap:wrap; gap:4px 16px;
  font-size:13px; }
ul.legend li::before { content:""; display:inline-block; width:12px; height:12px;
  margin-right:6px; vertical-align:-1px; background:var(--c); border-radius:2px; }
"""


def page(title: str, body: str, *, extra_css: str = "") -> str:
    """A whole HTML document around ``body`` (markup), titled ``title`` (text)."""
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{esc(title)}</title>\n"
        f"<style>{_CSS}{extra_css}</style>\n</head>\n<body>\n<main>\n{body}\n</main>\n"
        "</body>\n</html>\n"
    )
