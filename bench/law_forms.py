"""Each law form's fit time, and which form extrapolates best on public tables of runs.

    python bench/law_forms.py [--skip-speed] [--skip-tables] [--held-out-fraction 0.1]

1. Speed: every form (scaling_orchestrator.analysis.laws.registry.forms()) fits 400 synthetic
   points drawn from its own law with 1% noise, full start grid; prints `<form> fit 400
   points: X s` (goal <= 10 s on 2 cores) and how close the fit came to the truth.
2. Extrapolation: on each reference table (the shared reference-data folder, sections of its
   README: Epoch's Chinchilla points, the OLMo ladder, Muennighoff's C4 repetition runs,
   Gadre's over-training runs per dataset) the runs with the largest compute (the top 10% by
   C) are held out, every applicable form is fitted on the rest, and each form's error on the
   held-out runs is printed: mean |relative error| and R^2 (1 - SS_res / SS_tot over the
   held-out losses). The form with the lowest mean |relative error| wins. A table that is
   absent is skipped.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pyarrow.csv as pa_csv

from scaling_orchestrator.analysis.laws.registry import forms

REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "reference-data"
TRUTH = {
    "chinchilla": dict(E=1.8172, A=482.01, B=2085.43, alpha=0.3478, beta=0.3658),
    "kaplan": dict(alpha_N=0.076, alpha_D=0.095, N_c=8.8e13, D_c=5.4e13),
    "farseer": dict(s=20.0, q=-0.2, S=0.48, B=-0.5, b=0.05, Q=8.79, A=-0.1, a=0.05, E=-0.78),
    "data_constrained": dict(
        E=1.8691, A=520.83, B=1487.72, alpha=0.35266, beta=0.35266, R_D_star=15.387756, R_N_star=5.309743
    ),
}


def synthetic(form, seed: int = 0):
    """20 sizes 1e7..1e10 x 20 token counts (2..400 tokens per parameter) = 400 points;
    epochs drawn from {1, 1, 2, 4, .., 64} for the unique-token column; 1% noise on L."""
    rng = np.random.default_rng(seed)
    N = np.repeat(np.logspace(7, 10, 20), 20)
    D = N * np.tile(np.logspace(np.log10(2), np.log10(400), 20), 20)
    U = D / rng.choice([1, 1, 2, 4, 8, 16, 32, 64], len(N))
    L = form.predict_values(TRUTH[form.name], N, D, U) * np.exp(0.01 * rng.standard_normal(len(N)))
    return N, D, L, U


def speed() -> None:
    for name, form in forms().items():
        N, D, L, U = synthetic(form)
        wall0, cpu0 = time.perf_counter(), time.process_time()
        law = form.fit(N, D, L, U)
        wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
        print(f"{name} fit 400 points: {wall:.2f} s  ({cpu:.2f} s CPU, goal <= 10 s)")
        got = law.params()
        print(
            "  fitted vs truth: "
            + ", ".join(f"{k} {got[k]:.4g}/{TRUTH[name][k]:.4g}" for k in form.constants)
        )


def _read(path: Path):
    return pa_csv.read_csv(path) if path.exists() else None


def reference_tables() -> dict:
    """name -> dict(N, D, L, C[, U]) for each reference table present."""
    tables = {}
    epoch = _read(REFERENCE / "epoch_chinchilla_besiroglu2024" / "svg_extracted_data.csv")
    if epoch is not None:
        N, C, L = (epoch[c].to_numpy() for c in ("Model Size", "Training FLOP", "loss"))
        keep = L < np.sort(L)[-5]  # Epoch drops the 5 highest losses: 240 points
        tables["epoch_chinchilla"] = dict(N=N[keep], D=C[keep] / (6 * N[keep]), L=L[keep], C=C[keep])
    ladder = _read(REFERENCE / "olmo_ladder_bhagia2024" / "ladder_final_points.csv")
    if ladder is not None:
        N, D = ladder["n_params_nonembed"].to_numpy(), ladder["tokens"].to_numpy()
        tables["olmo_ladder_c4"] = dict(N=N, D=D, L=ladder["c4_en_loss"].to_numpy(), C=6 * N * D)
    blations = _read(REFERENCE / "datablations_muennighoff2023" / "datablations_contour_losses.csv")
    if blations is not None:
        N, D = blations["num_params"].to_numpy(), blations["token_num"].to_numpy()
        tables["datablations_c4"] = dict(
            N=N, D=D, L=blations["openLM_loss"].to_numpy(), C=6 * N * D, U=D / blations["epochs"].to_numpy()
        )
    gadre = _read(REFERENCE / "gadre2024_overtraining" / "overtrain_downstreams.csv")
    if gadre is not None:
        names = np.array(gadre["dataset_name"].to_pylist())
        for dataset in sorted(set(names)):
            m = names == dataset
            N, D = gadre["N"].to_numpy()[m].astype(float), gadre["D"].to_numpy()[m].astype(float)
            tables[f"gadre_{dataset}"] = dict(N=N, D=D, L=gadre["loss_c4_val"].to_numpy()[m], C=6 * N * D)
    return tables


def held_out_errors(form, table: dict, fraction: float) -> tuple[int, int, float, float]:
    """(n fitted, n held out, mean |rel error|, R^2) with the top `fraction` by C held out
    (ties at the cut held out too)."""
    C = table["C"]
    cut = np.sort(C)[-max(1, int(np.ceil(fraction * len(C))))]
    held, fit_rows = C >= cut, C < cut
    U = table.get("U")
    law = form.fit(
        table["N"][fit_rows], table["D"][fit_rows], table["L"][fit_rows], None if U is None else U[fit_rows]
    )
    with np.errstate(all="ignore"):
        predicted = law.predict(table["N"][held], table["D"][held], None if U is None else U[held])
    observed = table["L"][held]
    rel = float(np.mean(np.abs(predicted - observed) / observed))
    total = np.sum((observed - observed.mean()) ** 2)
    r2 = float(1 - np.sum((observed - predicted) ** 2) / total) if total > 0 else float("nan")
    return int(fit_rows.sum()), int(held.sum()), rel, r2


def extrapolation(fraction: float) -> None:
    tables = reference_tables()
    if not tables:
        print(f"no reference tables under {REFERENCE}: skipped")
        return
    print(f"{'table':<22}{'fit':>5}{'held':>6}  {'form':<18}{'mean |rel err|':>15}{'R^2':>9}")
    for name, table in tables.items():
        scores = {}
        for form_name, form in forms().items():
            if "unique_tokens" in form.required_columns and "U" not in table:
                continue
            n_fit, n_held, rel, r2 = held_out_errors(form, table, fraction)
            scores[form_name] = rel
            print(f"{name:<22}{n_fit:>5}{n_held:>6}  {form_name:<18}{100 * rel:>14.2f}%{r2:>9.3f}")
        winner = min(scores, key=scores.get)
        print(f"winner on {name}: {winner} (mean |rel err| {100 * scores[winner]:.2f}%)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-speed", action="store_true")
    parser.add_argument("--skip-tables", action="store_true")
    parser.add_argument("--held-out-fraction", type=float, default=0.1)
    args = parser.parse_args()
    if not args.skip_speed:
        speed()
    if not args.skip_tables:
        extrapolation(args.held_out_fraction)


if __name__ == "__main__":
    main()
