"""The three axes as dials (depth, width, both; context), the shape study's plan and reading,
and the one-line errors of each axis's bad input."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import pyarrow as pa
import pytest
import yaml

from scaling_orchestrator.analysis.report.shape_study import plot_shape_study, shape_studies
from scaling_orchestrator.orchestrator.designs import make_plan
from scaling_orchestrator.orchestrator.spec.sweep import SpecError, parse_sweep

ROOT = Path(__file__).resolve().parents[1]


def spec(**model) -> dict:
    """A small valid spec on the pydoc corpus with model section `model`."""
    return {
        "name": "axes",
        "budgets_flops": [2e11, 5e11, 1.25e12],
        "sizes_per_budget": 3,
        "model": model or {"depth": {"min": 1, "max": 8}, "aspect_ratio": 16, "head_dim": 16, "seq_len": 128},
        "data": {"corpus": "pydoc", "tokenizer": "byte"},
        "train": {"batch_tokens": 2048},
    }


def shape_spec(**design) -> dict:
    raw = spec(depth={"min": 1, "max": 4}, aspect_ratio=16, head_dim=8, seq_len=64)
    raw.update(budgets_flops=[4e11], train={"batch_tokens": 2048, "eval_tokens": 4096})
    raw["design"] = {
        "kind": "shape",
        "params": 1e5,
        "aspect_ratios": [4, 8, 16, 32, 64],
        "contexts": [32, 64, 128, 256],
        "params_tolerance": 0.15,
        **design,
    }
    return raw


def test_depth_dial_at_fixed_width_grows_depth_only():
    model = parse_sweep(spec(depth={"min": 1, "max": 6}, d_model=64, head_dim=16)).model
    assert [(s.n_layer, s.d_model, s.n_head) for s in model.shapes] == [(n, 64, 4) for n in range(1, 7)]
    assert [s.aspect_ratio for s in model.shapes] == [64 / n for n in range(1, 7)]
    assert model.label(model.shapes[2]) == "L3xD64" and model.at(5) == model.shapes[4]


def test_width_dial_at_fixed_depth_grows_width_by_heads():
    model = parse_sweep(spec(width={"min": 32, "max": 128}, n_layer=2, head_dim=16)).model
    assert [s.d_model for s in model.shapes] == [32, 48, 64, 80, 96, 112, 128]
    assert {s.n_layer for s in model.shapes} == {2} and {s.head_dim for s in model.shapes} == {16}
    assert model.label(model.shapes[0]) == "L2xD32" and model.at(96) == model.shapes[4]


def test_depth_and_width_dial_keeps_its_labels_and_names_other_contexts():
    model = parse_sweep(spec()).model
    assert model.label(model.shapes[3]) == "d4"
    assert model.label(model.shapes[3].with_context(512)) == "d4xT512"


def test_mup_section_puts_its_base_on_every_size():
    model = parse_sweep(
        spec(depth={"min": 2, "max": 6}, aspect_ratio=16, head_dim=16, parametrization="mup")
    ).model
    assert {s.parametrization for s in model.shapes} == {"mup"}
    assert {s.base_d_model for s in model.shapes} == {32}  # the narrowest size's width by default
    assert [s.width_multiplier for s in model.shapes] == [1, 1.5, 2, 2.5, 3]
    assert model.label(model.shapes[1]) == "d3"


def test_mup_changes_trial_ids_standard_keeps_them():
    std, mup = (
        make_plan(parse_sweep(spec(depth={"min": 1, "max": 8}, aspect_ratio=16, head_dim=16, **extra)))
        for extra in ({}, {"parametrization": "mup", "base_d_model": 16})
    )
    assert [t.shape.n_layer for t in std.trials] == [t.shape.n_layer for t in mup.trials]
    assert not {t.trial_id for t in std.trials} & {t.trial_id for t in mup.trials}
    assert (
        "parametrization" not in json.dumps(std.trials[0].to_dict()["shape"])
        or std.trials[0].to_dict()["shape"]["parametrization"] == "standard"
    )


BAD = [
    (
        "width not a multiple of head_dim",
        spec(width={"min": 40, "max": 128}, n_layer=2, head_dim=16),
        "model.width.min: 40 must be a multiple of model.head_dim (16)",
    ),
    (
        "fixed width not a multiple",
        spec(depth={"min": 1, "max": 4}, d_model=100, head_dim=32),
        "model.d_model: 100 must be a multiple of model.head_dim (32)",
    ),
    ("width dial without depth", spec(width={"min": 32, "max": 64}, head_dim=16), "model.n_layer: missing"),
    (
        "aspect and width",
        spec(depth={"min": 1, "max": 4}, d_model=64, aspect_ratio=16),
        "model.aspect_ratio: give",
    ),
    (
        "base wider than the model",
        spec(
            depth={"min": 2, "max": 6}, aspect_ratio=16, head_dim=16, parametrization="mup", base_d_model=64
        ),
        "model.base_d_model: 64 must be at most the narrowest size's d_model (d2: 32)",
    ),
    (
        "base head larger",
        spec(
            depth={"min": 2, "max": 6}, aspect_ratio=16, head_dim=16, parametrization="mup", base_head_dim=32
        ),
        "model.base_head_dim: 32 must be at most every size's head_dim",
    ),
    (
        "base under standard",
        spec(depth={"min": 2, "max": 6}, base_d_model=32),
        "model.base_d_model: 32 must be absent unless model.parametrization is mup",
    ),
    (
        "unknown parametrization",
        spec(depth={"min": 2, "max": 6}, parametrization="ntk"),
        "model.parametrization: 'ntk' must be one of standard, mup",
    ),
    (
        "shape head not a divisor",
        {**spec(), "model": {"shapes": [{"n_layer": 2, "d_model": 64, "n_head": 3}]}},
        "model.shapes[0].n_head: 3 must be a divisor of d_model (64)",
    ),
    (
        "context past the eval slice",
        {**shape_spec(contexts=[64, 8192]), "train": {"batch_tokens": 8192, "eval_tokens": 4096}},
        "design.contexts[1]: 8192 must be at most train.eval_tokens (4096)",
    ),
    (
        "context not dividing the batch",
        shape_spec(contexts=[64, 96]),
        "design.contexts[1]: 96 must be a divisor of train.batch_tokens (2048)",
    ),
    (
        "unreachable aspect",
        shape_spec(aspect_ratios=[4, 1000]),
        "design.aspect_ratios[1]: 1000 must be reachable",
    ),
    (
        "aspects giving one shape",
        shape_spec(aspect_ratios=[86, 90]),
        "design.aspect_ratios[1]: 90 must be a shape",
    ),
    (
        "params with two budgets",
        {**shape_spec(), "budgets_flops": [4e11, 8e11]},
        "design.params: 100000 must be",
    ),
    ("missing aspects", shape_spec(aspect_ratios=None), "design.aspect_ratios: missing"),
]


@pytest.mark.parametrize("case, raw, expected", BAD, ids=[b[0] for b in BAD])
def test_bad_axis_input_is_one_line_naming_the_field(case, raw, expected):
    raw = copy.deepcopy(raw)
    if raw.get("design", {}).get("aspect_ratios", 0) is None:
        del raw["design"]["aspect_ratios"]
    with pytest.raises(SpecError) as info:
        make_plan(parse_sweep(raw, "bad.yaml"))
    message = str(info.value)
    assert "\n" not in message and message.startswith("bad.yaml: ") and expected in message, message


def test_context_limit_is_the_val_split_of_a_small_corpus(tmp_path):
    # 40 paragraphs of ~60 bytes: a 5% val split of 2 paragraphs holds ~120 byte tokens
    (tmp_path / "tiny.txt").write_text("\n\n".join(f"paragraph {i}: " + "words " * 8 for i in range(40)))
    raw = shape_spec(contexts=[32, 64, 256])
    raw["data"] = {"corpus": str(tmp_path / "tiny.txt"), "tokenizer": "byte", "val_fraction": 0.05}
    with pytest.raises(
        SpecError, match=r"design.contexts\[2\]: 256 must be at most \d+: the corpus's val split"
    ):
        make_plan(parse_sweep(raw))


def test_shape_plan_spans_aspect_and_context_at_fixed_params_and_compute():
    plan = make_plan(parse_sweep(shape_spec()))
    study = plan.to_dict()["shape_study"][0]
    rows = study["aspect_ratios"]
    aspects = [r["aspect_ratio"] for r in rows]
    assert max(aspects) / min(aspects) >= 16
    assert all(abs(r["non_embedding_params"] / 1e5 - 1) <= 0.15 for r in rows)
    assert study["contexts"] == [32, 64, 128, 256]
    assert {t.kind for t in plan.trials} == {"shape"}
    assert all(abs(t.flops / 4e11 - 1) <= 0.02 for t in plan.trials)
    reference = [t for t in plan.trials if t.size_label.startswith(study["reference"])]
    assert sorted(t.shape.seq_len for t in reference) == [32, 64, 128, 256]
    # fixed compute: the longest context pays most for attention, so it trains on the fewest tokens
    by_context = {t.shape.seq_len: t for t in reference}
    assert by_context[256].train.total_tokens < by_context[32].train.total_tokens
    assert len({t.trial_id for t in plan.trials}) == len({t.size_label for t in plan.trials}) == 8
    assert any("aspect ratios 4..88 (22x)" in n for n in plan.notes), plan.notes


def test_shape_plan_at_fixed_tokens_trains_every_shape_on_the_same_tokens():
    plan = make_plan(parse_sweep(shape_spec(tokens=131072)))
    assert {t.train.total_tokens for t in plan.trials} == {131072}
    assert {t.budget_flops for t in plan.trials} == {4e11}  # the study's key, not what each spends


def test_example_shape_study_plans():
    raw = yaml.safe_load((ROOT / "examples" / "shape-study.yaml").read_text())
    raw["data"] = {"corpus": "pydoc", "tokenizer": "byte"}  # the plan's arithmetic, not sotu's tokens
    plan = make_plan(parse_sweep(raw))
    study = plan.to_dict()["shape_study"][0]
    aspects = [r["aspect_ratio"] for r in study["aspect_ratios"]]
    assert max(aspects) / min(aspects) >= 16 and study["contexts"][-1] / study["contexts"][0] >= 4


def _rows(losses: dict) -> pa.Table:
    """Final rows of a planned shape study: {(n_layer, d_model, seq_len): loss}."""
    rows = [
        {
            "kind": "shape",
            "n_layer": a,
            "d_model": b,
            "seq_len": t,
            "non_embedding_params": 12 * a * b * b,
            "val_loss": loss,
            "budget_flops": 4e11,
            "tokens": 1e5,
            "final": True,
            "status": "ok",
        }
        for (a, b, t), loss in losses.items()
    ]
    rows.append({**rows[0], "final": False, "val_loss": 9.0})  # an earlier evaluation: not read
    rows.append({**rows[0], "kind": "scaling", "val_loss": 1.0})  # another study's row: not read
    return pa.Table.from_pylist(rows)


def test_shape_study_reads_spreads_and_plots(tmp_path):
    losses = {
        (8, 32, 64): 4.40,
        (4, 48, 64): 4.20,
        (2, 64, 64): 4.25,
        (1, 96, 64): 4.62,
        (4, 48, 32): 4.30,
        (4, 48, 128): 4.15,
        (4, 48, 256): 4.10,
    }
    (study,) = shape_studies(_rows(losses))
    assert [p.aspect_ratio for p in study.aspect] == [4, 12, 32, 96]
    assert [p.seq_len for p in study.context] == [32, 64, 128, 256]
    assert study.aspect_spread == pytest.approx(4.62 / 4.20 - 1)
    assert study.context_spread == pytest.approx(4.30 / 4.10 - 1)
    assert "spread 10.0%" in study.summary() and "(24x)" in study.summary()
    assert math.isclose(study.to_dict()["aspect_spread"], 0.1)
    path = plot_shape_study([study], tmp_path / "shape.png")
    assert path.stat().st_size > 10_000


def test_shape_study_command_prints_and_writes(tmp_path, capsys):
    import pyarrow.parquet as pq

    from scaling_orchestrator.analysis.report.shape_study import main

    losses = {(8, 32, 64): 4.40, (4, 48, 64): 4.20, (1, 96, 64): 4.62, (4, 48, 128): 4.15}
    pq.write_table(_rows(losses), tmp_path / "rows.parquet")
    main([str(tmp_path), "--plot", str(tmp_path / "s.png"), "--json", str(tmp_path / "s.json")])
    out = capsys.readouterr().out
    assert "over aspect ratios 4..96 (24x): spread 10.0%" in out and "over contexts 64..128 (2x)" in out
    assert json.loads((tmp_path / "s.json").read_text())[0]["aspect_spread"] == pytest.approx(0.1)


def test_scaling_fit_and_report_read_a_shape_study(tmp_path, capsys):
    import pyarrow.parquet as pq

    from scaling_orchestrator.cli.study import main

    losses = {(8, 32, 64): 4.40, (4, 48, 64): 4.20, (1, 96, 64): 4.62, (4, 48, 128): 4.15}
    rows = _rows(losses)
    pq.write_table(rows.slice(0, rows.num_rows - 1), tmp_path / "rows.parquet")  # shape rows only
    assert main(["fit", str(tmp_path), "--json", str(tmp_path / "fit.json")]) == 0
    assert "over aspect ratios 4..96 (24x): spread 10.0%" in capsys.readouterr().out
    [study] = json.loads((tmp_path / "fit.json").read_text())
    assert study["context_spread"] == pytest.approx(4.20 / 4.15 - 1)
    assert main(["report", str(tmp_path), "--out", str(tmp_path / "report")]) == 0
    text = (tmp_path / "report" / "report.md").read_text()
    assert text.startswith("# Shape study") and "| L4xD48xT128 | 128 |" in text and "spread 10.0%" in text
    assert (tmp_path / "report" / "shape.png").stat().st_size > 10_000
    assert "data:image/png;base64," in (tmp_path / "report" / "report.html").read_text()
