"""report.md and one self-contained report.html from a `fit_all` result.

The report is a list of blocks (heading, paragraph, table, image) rendered twice: Markdown
linking the PNGs beside it, and HTML with every PNG embedded as a base64 data: URI, so the
single file opens from disk, mails as an attachment and needs no server.
"""

from __future__ import annotations

import base64
import html
from pathlib import Path

from analysis.hparams import NO_ROWS
from analysis.report_plots import make_plots

CAPTIONS = {
    "isoflop": "IsoFLOP profiles with the window parabolas and their minima",
    "optimal": "N*(C) and D*(C) per method with bootstrap 95% bands",
    "parametric": "Parametric fit against the data, and its residuals against N and D",
    "backtest": "Back-test: the largest budget predicted from the smaller ones",
    "lr_law": "Loss against peak learning rate per size with the window parabolas (left); "
              "lr*(N) with its bootstrap 95% band (right)",
    "batch_law": "Loss against batch tokens per size (best lr at each batch) with the window "
                 "parabolas (left); B*(C) with its bootstrap 95% band (right)",
}
HPARAM_LAWS = (("lr_law", "lr", "Learning-rate law lr*(N) = c N^p", "params"),
               ("batch_law", "batch_tokens", "Batch-size law B*(C) = c C^p", "flops"))


def fmt(x, digits: int = 3) -> str:
    if x is None:
        return "n/a"
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, (int, float)):
        return f"{x:.{digits}g}"
    return str(x)


def fmt_ci(ci, digits: int = 3) -> str:
    return "n/a" if not ci else f"[{fmt(ci[0], digits)}, {fmt(ci[1], digits)}]"


def _unfit(section: dict) -> str:
    return f"Not fittable: {section.get('reason', 'unknown reason')}."


def data_blocks(result: dict) -> list:
    d = result["data"]
    span = (f" ({fmt(min(d['budgets']))} to {fmt(max(d['budgets']))} FLOPs)"
            if d["budgets"] else "")
    hp = f"; {d['n_hparam_trials']} hparam trials" if d.get("n_hparam_trials") else ""
    blocks = [("h2", "Data"), ("p", (
        f"{d['n_final_points']} final points from {d['n_runs']} runs over {d['n_budgets']} "
        f"budgets{span}; source {d['source'] or 'in memory'}; training curves: "
        f"{fmt(d['training_curves'])}{hp}."))]
    if d["excluded"]:
        blocks.append(("table", ["excluded because", "rows"],
                       [[k, str(v)] for k, v in sorted(d["excluded"].items())]))
    for status, ids in sorted(d.get("excluded_trials", {}).items()):
        blocks.append(("p", f"{len(ids)} {status} trial(s) excluded: {', '.join(ids)}."))
    if not d["excluded"] and not d.get("excluded_trials"):
        blocks.append(("p", "No rows were excluded."))
    return blocks


def recommendation_blocks(result: dict) -> list:
    rows = []
    for r in result["compute_optimal"]:
        if r.get("fittable", True) is False:
            rows.append([fmt(r["flops"]), r["method"], "not fittable", "", "", r["reason"]])
            continue
        ci = r["ci95"]
        rows.append([fmt(r["flops"]), r["method"], f"{fmt(r['params'])} {fmt_ci(ci['params'])}",
                     f"{fmt(r['tokens'])} {fmt_ci(ci['tokens'])}",
                     f"{fmt(r['loss'], 4)} {fmt_ci(ci['loss'], 4)}", ""])
    if not rows:
        return [("h2", "Recommendation"), ("p", "No scaling rows: nothing to recommend.")]
    return [("h2", "Recommendation"),
            ("p", "Compute-optimal parameters N*, tokens D* and loss L* per target budget and "
                  "method, with bootstrap 95% intervals where estimated."),
            ("table", ["target FLOPs", "method", "N*", "D*", "L*", "note"], rows)]


def method_blocks(result: dict) -> list:
    blocks = [("h2", "Parametric law L(N, D) = E + A/N^alpha + B/D^beta")]
    par = result["parametric"]
    if par.get("fittable"):
        ci = par.get("ci95", {})
        blocks.append(("table", ["parameter", "value", "95% interval"],
                       [[k, fmt(par[k], 4), fmt_ci(ci.get(k), 4)]
                        for k in ("E", "A", "B", "alpha", "beta", "a", "b")]))
        blocks.append(("p", f"{par['n_points']} points, summed Huber {fmt(par['objective'])}, "
                            f"converged: {fmt(par['converged'])}."))
    else:
        blocks.append(("p", _unfit(par)))
    blocks += [("h2", "IsoFLOP (Approach 2)")]
    iso = result["isoflop"]
    if iso.get("fittable"):
        ci = iso.get("ci95", {})
        blocks.append(("p", f"N* = {fmt(iso['k_params'])} C^{fmt(iso['a'], 4)} "
                            f"(95% {fmt_ci(ci.get('a'))}), D* = {fmt(iso['k_tokens'])} "
                            f"C^{fmt(iso['b'], 4)} (95% {fmt_ci(ci.get('b'))}); parabola through "
                            f"the {iso['window']} points nearest each minimum, "
                            f"{iso['n_interior']} interior budgets."))
        blocks.append(("table", ["budget FLOPs", "points", "N*", "D*", "L*", "edge", "note"],
                       [[fmt(b["flops"]), str(b["n_points"]), fmt(b["params_opt"]),
                         fmt(b["tokens_opt"]), fmt(b["loss_opt"], 4), fmt(b["edge"]),
                         b.get("reason", "")] for b in iso["budgets"]]))
    else:
        blocks.append(("p", _unfit(iso)))
    env = result["envelope"]
    blocks += [("h2", "Training-curve envelope (Approach 1)"),
               ("p", f"N* ~ C^{fmt(env['a'], 4)}, D* ~ C^{fmt(env['b'], 4)} from "
                     f"{env['n_grid_used']} envelope points over {env['n_runs']} runs."
                if env.get("fittable") else _unfit(env))]
    return blocks + kaplan_blocks(result) + disagreement_blocks(result)


def kaplan_blocks(result: dict) -> list:
    k, rows = result["kaplan"], []
    for key, label, scale in (("L_of_N", "L(N) = (N_c/N)^alpha", "N_c"),
                              ("L_of_D", "L(D) = (D_c/D)^alpha", "D_c")):
        s = k.get(key, {})
        rows.append([label, f"alpha = {fmt(s['alpha'], 4)}, {scale} = {fmt(s[scale])}"
                     if s.get("fittable") else _unfit(s)])
    f = k.get("frontier", {})
    rows.append(["L*(C) = E + A C^-alpha", f"E = {fmt(f['E'], 4)}, A = {fmt(f['A'])}, "
                 f"alpha = {fmt(f['alpha'], 4)}" if f.get("fittable") else _unfit(f)])
    return [("h2", "Kaplan et al. 2020 laws"), ("table", ["law", "fit"], rows)]


def disagreement_blocks(result: dict) -> list:
    dis, rows = result["disagreement"], []
    for name in ("a", "b"):
        for method, v in dis[name]["methods"].items():
            rows.append([name, method, fmt(v["value"], 4), fmt_ci(v["ci95"])])
    verdict = ("The approaches DISAGREE: their 95% intervals do not overlap."
               if dis["flag"] else "No disagreement flagged (intervals overlap or too few).")
    return [("h2", "Exponents across approaches"),
            ("table", ["exponent", "method", "value", "95% interval"], rows), ("p", verdict)]


def backtest_blocks(result: dict) -> list:
    bt = result["backtest"]
    if not bt.get("fittable"):
        return [("h2", "Back-test"), ("p", _unfit(bt))]
    pct = 100 * bt["rel_error"]
    verdict = (f"PASSED: predicted loss within {pct:.2f}% of observed (threshold "
               f"{100 * bt['threshold']:.0f}%)." if bt["passed"] else
               f"WARNING: the back-test error {pct:.2f}% EXCEEDS the {100 * bt['threshold']:.0f}% "
               "threshold; treat extrapolated recommendations with caution.")
    p_err = bt.get("params_rel_error")
    return [("h2", "Back-test"),
            ("p", f"Held out the largest budget ({fmt(bt['held_out_flops'])} FLOPs, "
                  f"{bt['n_held_out_runs']} runs) and fitted the {bt['n_train_budgets']} smaller "
                  f"ones. Predicted best loss {fmt(bt['predicted_loss'], 4)}, observed "
                  f"{fmt(bt['observed_loss'], 4)}. IsoFLOP N* forecast "
                  f"{fmt(bt.get('predicted_params'))} vs {fmt(bt['observed_params'])} "
                  f"({bt['observed_params_from']}), error "
                  f"{'n/a' if p_err is None else f'{100 * p_err:.1f}%'}."),
            ("p", verdict)]


def has_hparam_rows(result: dict) -> bool:
    return "lr_law" in result and result["lr_law"].get("reason") != NO_ROWS


def hparam_blocks(result: dict) -> list:
    """lr*(N) and B*(C) sections, only when the source had hparam trials."""
    if not has_hparam_rows(result):
        return []
    blocks = []
    for key, name, title, x in HPARAM_LAWS:
        sec = result[key]
        blocks.append(("h2", title))
        if sec.get("fittable"):
            ci = sec["ci95"]
            lo, hi = sec["n_range" if x == "params" else "flops_range"]
            blocks.append(("p", f"{name}* = {fmt(sec['coefficient'], 4)} "
                                f"{'N' if x == 'params' else 'C'}^{fmt(sec['exponent'], 4)}; "
                                f"exponent 95% {fmt_ci(ci['exponent'])}, coefficient 95% "
                                f"{fmt_ci(ci['coefficient'])}; fitted on {sec['n_sizes']} "
                                f"interior sizes, {x} {fmt(lo)} to {fmt(hi)}. Parabola in log "
                                f"{name} through the points nearest each size's best; edge "
                                "sizes (best at the grid's end) are left out."))
        else:
            blocks.append(("p", _unfit(sec)))
        if sec.get("sizes"):
            blocks.append(("table", ["size", x, "trials", "diverged", f"{name}*", "95% interval",
                                     "L*", "edge", "in law", "note"],
                           [[s["label"], fmt(s[x]), str(s["n_trials"]), str(s["n_diverged"]),
                             fmt(s[f"{name}_opt"]), fmt_ci(s[f"{name}_ci95"]),
                             fmt(s["loss_opt"], 4), fmt(s["edge"]), fmt(s.get("used_in_law")),
                             s.get("reason", "")] for s in sec["sizes"]]))
        excluded = sec.get("excluded") or {}
        if excluded:
            blocks.append(("p", "Trials: " + ", ".join(f"{k} {v}" for k, v in
                                                       sorted(excluded.items()))
                                + " (diverged = loss +inf: they bound the bowl, not fitted)."))
    return blocks


def build_blocks(result: dict, plots: dict[str, Path]) -> list:
    blocks = [("h1", "Scaling-law fit report")]
    bt = result["backtest"]
    if bt.get("fittable") and not bt["passed"]:
        blocks.append(("p", f"WARNING: back-test error {100 * bt['rel_error']:.2f}% exceeds the "
                            f"{100 * bt['threshold']:.0f}% threshold."))
    blocks += data_blocks(result) + recommendation_blocks(result) + method_blocks(result)
    blocks += backtest_blocks(result) + hparam_blocks(result)
    blocks += [("h2", "Figures")] + [("img", path, CAPTIONS[name]) for name, path in plots.items()]
    return blocks


def to_markdown(blocks: list) -> str:
    out = []
    for kind, *rest in blocks:
        if kind in ("h1", "h2"):
            out.append(("# " if kind == "h1" else "## ") + rest[0])
        elif kind == "p":
            out.append(rest[0])
        elif kind == "table":
            head, rows = rest
            out.append("\n".join(["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
                                 + ["| " + " | ".join(r) + " |" for r in rows]))
        elif kind == "img":
            out.append(f"![{rest[1]}]({rest[0].name})")
    return "\n\n".join(out) + "\n"


def to_html(blocks: list) -> str:
    body = []
    for kind, *rest in blocks:
        if kind in ("h1", "h2", "p"):
            body.append(f"<{kind}>{html.escape(rest[0])}</{kind}>")
        elif kind == "table":
            head, rows = rest
            body.append("<table><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in head)
                        + "</tr>" + "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r)
                                            + "</tr>" for r in rows) + "</table>")
        elif kind == "img":
            data = base64.b64encode(rest[0].read_bytes()).decode("ascii")
            body.append(f'<figure><img alt="{html.escape(rest[1])}" '
                        f'src="data:image/png;base64,{data}"><figcaption>'
                        f"{html.escape(rest[1])}</figcaption></figure>")
    style = ("body{font-family:sans-serif;max-width:1100px;margin:auto;padding:1em}"
             "table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;"
             "padding:2px 8px;text-align:left}img{max-width:100%}")
    return ("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>Scaling-law fit report"
            f"</title><style>{style}</style></head><body>\n" + "\n".join(body)
            + "\n</body></html>\n")


def write_report(result: dict, points, out_dir) -> dict[str, Path]:
    """Write report.md, report.html and the PNGs into out_dir; name -> path of each file."""
    out_dir = Path(out_dir)
    plots = make_plots(result, points, out_dir)
    blocks = build_blocks(result, plots)
    md, page = out_dir / "report.md", out_dir / "report.html"
    md.write_text(to_markdown(blocks), encoding="utf-8")
    page.write_text(to_html(blocks), encoding="utf-8")
    return {"markdown": md, "html": page, **plots}
