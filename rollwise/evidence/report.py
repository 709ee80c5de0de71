"""`rollwise report`: tables and plots for runs that already exist.

    rollwise report runs/cmp                       # a compare directory (OUT/variant/seed-N)
    rollwise report a/seed-0 a/seed-1 b/seed-0     # run dirs, grouped by parent directory name
    rollwise report r1 r2 --label base --label new # or by an explicit label per run dir

Writes into the output directory: summary.json (the numbers, see rollwise.evidence.summary; run
directories relative to it), report.md (warnings, each variant's settings, the tables, a glossary),
accuracy.png, effective.png, prediction.png (when a selector predicts) and report.html, a single
self-contained file with the same content and the figures embedded as base64 PNGs. A variant whose
final accuracy is within two standard errors of the baseline's gets a warning: the runs cannot tell
them apart (rollwise.evidence.explain).
"""

from __future__ import annotations

import argparse
import base64
import html
import json
import os
from pathlib import Path


from rollwise.config import yamlfile
from rollwise.evidence import explain
from rollwise.store import safefiles
from rollwise.evidence.summary import format_tables, load_run, summarize

SPEC_FILE = "compare.yaml"  # written by `rollwise compare`: variant order, seeds and target


def write_report(out_dir: str | Path, runs: dict[str, list[Path]], target: float | None = None,
                 metric: str = "eval_temp_acc") -> dict:
    """Summarise and plot runs grouped by variant (the first is the baseline); returns the summary.

    Run directories appear relative to out_dir (summary.json's `run_dir`, the per-run table), so a report
    moved with its runs, or read on another machine, still points at them.

    Example:
        >>> write_report("report", {"uniform": [Path("runs/u0")], "mopps": [Path("runs/m0")]})  # doctest: +SKIP
    """
    from rollwise.evidence import plots  # matplotlib: imported only when drawing, not for every `rollwise` command

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    loaded = {name: [load_run(p) for p in paths] for name, paths in runs.items() if paths}
    settings = explain.variant_settings(loaded)
    for variant in loaded.values():
        for run in variant:
            run["path"] = os.path.relpath(Path(run["path"]).resolve(), out.resolve())
    summary = summarize(loaded, target, metric)
    summary["separation"] = explain.separation(summary, loaded)
    summary["warnings"] = explain.warnings(summary, summary["separation"])
    summary["settings"] = settings
    safefiles.write_atomic(out / "summary.json", (json.dumps(summary, indent=2) + "\n").encode())
    tables = format_tables(summary, per_seed=True)
    figures = [p for p in (plots.plot_accuracy(loaded, summary, out / "accuracy.png"),
                           plots.plot_effective(loaded, out / "effective.png"),
                           plots.plot_prediction(loaded, out / "prediction.png")) if p is not None]
    safefiles.write_atomic(out / "report.md", _markdown(summary, tables, figures).encode("utf-8"))
    safefiles.write_atomic(out / "report.html", _html(summary, tables, figures).encode("utf-8"))
    return summary


def _markdown(summary: dict, tables: str, figures: list[Path]) -> str:
    images = "\n".join(f"![{p.stem}]({p.name})" for p in figures)
    warned = "".join(f"> **Warning.** {line}\n>\n" for line in summary["warnings"])
    return (f"# rollwise comparison\n\n{warned}\n## Variants\n\n{explain.settings_markdown(summary['settings'])}\n\n"
            f"## Results\n\n{tables}\n{images}\n\n## Glossary\n\n{explain.glossary_markdown()}\n")


def _html(summary: dict, tables: str, figures: list[Path]) -> str:
    """One file that opens anywhere: warnings, settings, tables, figures inlined as data URIs, glossary."""
    body = [f'<p class="warning"><b>Warning.</b> {html.escape(line)}</p>' for line in summary["warnings"]]
    body.append("<h2>Variants</h2>")
    body += [_block_html(block) for block in explain.settings_markdown(summary["settings"]).split("\n\n")]
    body.append("<h2>Results</h2>")
    body += [_block_html(block) for block in tables.strip().split("\n\n")]
    for fig in figures:
        data = base64.b64encode(fig.read_bytes()).decode("ascii")
        body.append(f'<figure><img alt="{fig.stem}" src="data:image/png;base64,{data}"></figure>')
    body.append("<h2>Glossary</h2><dl>" + "".join(f"<dt>{html.escape(term)}</dt><dd>{html.escape(text)}.</dd>"
                                                   for term, text in explain.GLOSSARY) + "</dl>")
    style = ("body{font-family:sans-serif;margin:2em;max-width:1400px}table{border-collapse:collapse;margin:1em 0}"
             "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right;font-size:13px}"
             "td:first-child,th:first-child{text-align:left}img{max-width:100%}"
             ".warning{background:#fff3cd;border:1px solid #e0b000;padding:.6em 1em}dt{font-weight:bold;margin-top:.4em}")
    return (f"<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>rollwise comparison</title>"
            f"<style>{style}</style></head><body><h1>rollwise comparison</h1>\n" + "\n".join(body) + "\n</body></html>\n")


def _block_html(block: str) -> str:
    return _table_html(block) if block.startswith("|") else f"<p>{html.escape(block)}</p>"


def _table_html(block: str) -> str:
    lines = [line for line in block.splitlines() if not set(line) <= set("|-")]
    cells = [[html.escape(c.strip()) for c in line.strip().strip("|").split("|")] for line in lines]
    head = "".join(f"<th>{c}</th>" for c in cells[0])
    rows = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in cells[1:])
    return f"<table><tr>{head}</tr>{rows}</table>"


# ------------------------------------------------------------------------------------ finding runs

def is_run_dir(path: Path) -> bool:
    return (path / "metrics.jsonl").is_file()


def discover(paths: list[str | Path], labels: list[str] | None = None) -> dict[str, list[Path]]:
    """Group run directories into variants.

    One directory that is not itself a run is a comparison: its runs are found up to two levels
    down and grouped by their parent's name, in the variant order of its compare.yaml when there is
    one. Otherwise every path must be a run dir, labelled by --label or by its parent's name.
    """
    paths = [Path(p) for p in paths]
    if len(paths) == 1 and not is_run_dir(paths[0]) and not labels:
        return discover_compare_dir(paths[0])
    missing = [str(p) for p in paths if not is_run_dir(p)]
    if missing:
        raise FileNotFoundError(f"not run directories (no metrics.jsonl): {', '.join(missing)}")
    if labels and len(labels) != len(paths):
        raise ValueError(f"{len(labels)} --label value(s) for {len(paths)} run dir(s): give one per run dir")
    groups: dict[str, list[Path]] = {}
    for i, path in enumerate(paths):
        name = labels[i] if labels else (path.resolve().parent.name or "runs")
        groups.setdefault(name, []).append(path)
    return groups


def discover_compare_dir(root: Path) -> dict[str, list[Path]]:
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such directory")
    found = sorted({p.parent for pattern in ("*/metrics.jsonl", "*/*/metrics.jsonl") for p in root.glob(pattern)})
    if not found:
        raise FileNotFoundError(f"{root}: no run directories (metrics.jsonl) in it or one level below")
    groups: dict[str, list[Path]] = {}
    for run in found:
        name = run.parent.name if run.parent != root else run.name
        groups.setdefault(name, []).append(run)
    order = list(read_spec(root).get("variants", {}))
    ranked = sorted(groups, key=lambda n: (order.index(n) if n in order else len(order), n))
    return {name: sorted(groups[name], key=_seed_order) for name in ranked}


def _seed_order(path: Path):
    tail = path.name.rsplit("-", 1)[-1]
    return (0, int(tail), "") if tail.isdigit() else (1, 0, path.name)


def read_spec(root: Path) -> dict:
    spec = Path(root) / SPEC_FILE
    return (yamlfile.load(spec.read_bytes()[:yamlfile.MAX_BYTES + 1], str(spec)) or {}) if spec.is_file() else {}


# ------------------------------------------------------------------------------------ command line

def add_parser(subparsers) -> None:
    p = subparsers.add_parser("report", help="tables and plots for existing runs or a compare directory",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", metavar="RUN_DIR",
                   help="a compare directory, or run directories (each with metrics.jsonl)")
    p.add_argument("--label", action="append", default=None,
                   help="variant name of each run dir, in order (default: the parent directory's name); "
                        "the first variant is the baseline")
    p.add_argument("--baseline", default=None,
                   help="variant the ratios divide by (default: the first: compare order, first --label, "
                        "or the first parent directory name)")
    p.add_argument("--out", default=None,
                   help="where to write the report (default: the compare directory, or ./report for run dirs)")
    p.add_argument("--target", type=float, default=None,
                   help="target accuracy (default: the compare's target, else the baseline's final accuracy)")
    p.add_argument("--metric", default="eval_temp_acc", choices=("eval_temp_acc", "eval_greedy_acc"),
                   help="held-out accuracy to compare")
    p.set_defaults(func=_run_report)


def _run_report(args: argparse.Namespace) -> int:
    runs = discover(args.runs, args.label)
    if args.baseline is not None:
        if args.baseline not in runs:
            raise ValueError(f"--baseline {args.baseline}: no such variant (have {', '.join(runs)})")
        runs = {args.baseline: runs[args.baseline], **runs}
    single_compare = len(args.runs) == 1 and not is_run_dir(Path(args.runs[0])) and not args.label
    out = Path(args.out or (args.runs[0] if single_compare else "report"))
    target = args.target if args.target is not None else (read_spec(Path(args.runs[0])).get("target")
                                                          if single_compare else None)
    summary = write_report(out, runs, target, args.metric)
    print(format_tables(summary))
    for line in summary["warnings"]:
        print(f"warning: {line}")
    print(f"report: {out / 'report.md'}, {out / 'report.html'}")
    return 0
