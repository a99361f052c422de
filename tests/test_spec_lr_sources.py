"""train.lr: {from_fit} and {from_search} in the spec (each size's lr from a fitted law or a
μP search), one-line errors naming the field; the hparams section's own checks are in
tests/test_spec_hparams.py."""

from __future__ import annotations

import json
import math

import pytest

from scaling_orchestrator.orchestrator.designs import make_plan
from scaling_orchestrator.orchestrator.spec.references import lr_note, resolve
from scaling_orchestrator.orchestrator.spec.sweep import SpecError, load_sweep, parse_sweep
from tests.test_spec_hparams import ROOT, base


def write_law(tmp_path, **law) -> str:
    path = tmp_path / "fit.json"
    path.write_text(
        json.dumps(
            {"lr_law": {"fittable": True, "coefficient": 0.3, "exponent": -0.5, "n_range": [3e4, 2e5], **law}}
        )
    )
    return str(path)


def test_lr_from_fit_sets_each_size_and_warns_outside_the_fitted_range(tmp_path):
    spec = {k: v for k, v in base().items() if k != "hparams"}
    spec["train"] = {"batch_tokens": 2048, "lr": {"from_fit": write_law(tmp_path)}}
    plan = make_plan(parse_sweep(spec))
    for t in plan.trials:
        assert t.train.lr == pytest.approx(0.3 * t.shape.param_counts()["total"] ** -0.5, rel=1e-12)
    d2 = next(t for t in plan.trials if t.shape.n_layer == 2)
    assert d2.train.lr == pytest.approx(1.2016e-3, rel=1e-4)  # 0.3 / sqrt(62,336)
    sizes = sorted({t.shape.param_counts()["total"] for t in plan.trials})
    outside = [n for n in sizes if not 3e4 <= n <= 2e5]
    read, *extrapolated = plan.notes  # first what the plan read, then each size outside the law
    assert read.startswith("train.lr.from_fit: lr = 0.3 N^-0.5 (total params), the lr law in ")
    assert read.endswith("fit.json, fitted on 30k..200k params")
    assert outside and len(extrapolated) == len(outside)
    assert all("is an extrapolation" in n and "fit.json" in n for n in extrapolated)
    text = plan.render()
    header = text.splitlines()[3].split()
    assert header[header.index("steps") + 1] == "lr" and f"{d2.train.lr:.3g}" in text
    assert sum(line.startswith("note: lr:") for line in text.splitlines()) == len(outside)


def test_lr_from_fit_in_non_embedding_params_and_no_column_for_one_lr(tmp_path):
    spec = {k: v for k, v in base().items() if k != "hparams"}
    spec["train"] = {
        "batch_tokens": 2048,
        "lr": {"from_fit": write_law(tmp_path, n_range=[1e3, 1e7]), "params": "non_embedding"},
    }
    plan = make_plan(parse_sweep(spec))
    d2 = next(t for t in plan.trials if t.shape.n_layer == 2)
    assert d2.train.lr == pytest.approx(0.3 / math.sqrt(25472))
    assert [n.split(", the lr law in")[0] for n in plan.notes] == [
        "train.lr.from_fit: lr = 0.3 N^-0.5 (non_embedding params)"
    ]  # what was read, and no size outside the law's range
    assert (
        "  lr  " not in make_plan(parse_sweep({k: v for k, v in base().items() if k != "hparams"})).render()
    )


def test_example_spec_parses_and_plans():
    plan = make_plan(load_sweep(ROOT / "examples" / "hparam-search.yaml"))
    h = plan.sweep.hparams
    assert h.scheduler == "asha" and h.search == "random" and [s.label for s in h.sizes] == ["d1", "d2", "d3"]
    assert plan.trials and not plan.notes
    assert plan.to_dict()["hparams"]["flops_upper_bound"] < 1e14  # minutes on a laptop, not hours


def write_search(
    tmp_path, d_model: int = 32, lrs=(1e-3, 2e-3, 4e-3, 8e-3, 1.6e-2), best: float = 4e-3
) -> str:
    """A results folder of one searched size (label "d2", d_model wide): loss a bowl in log2 lr."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder = tmp_path / "search"
    folder.mkdir()
    rows = [
        {
            "trial_id": f"t{i}",
            "kind": "hparam",
            "size_label": "d2",
            "n_layer": 2,
            "d_model": d_model,
            "params": 40000,
            "lr": lr,
            "batch_tokens": 2048,
            "tokens": 1e6,
            "budget_flops": 1e12,
            "val_loss": 4.0 + 0.05 * math.log2(lr / best) ** 2,
            "final": True,
            "status": "ok",
        }
        for i, lr in enumerate(lrs)
    ]
    pq.write_table(pa.Table.from_pylist(rows), folder / "rows.parquet")
    return str(folder)


def _mup_spec(lr=None, **model) -> dict:
    spec = {k: v for k, v in base().items() if k != "hparams"}
    spec["model"] = {
        "depth": {"min": 2, "max": 8},
        "aspect_ratio": 16,
        "head_dim": 16,
        "seq_len": 128,
        "parametrization": "mup",
        **model,
    }
    if lr is not None:
        spec["train"] = {**spec["train"], "lr": lr}
    return spec


def test_lr_from_search_feeds_every_size_under_mup(tmp_path):
    folder = write_search(tmp_path)
    sweep = parse_sweep(_mup_spec({"from_search": folder}))
    assert sweep.train.lr_law is None and sweep.train.lr_source.path == folder  # parsing reads nothing
    plan = make_plan(sweep)  # resolve reads the search, then the design plans
    lrs = {t.train.lr for t in plan.trials}
    assert len(lrs) == 1 and lrs.pop() == pytest.approx(4e-3, rel=1e-9)  # the bowl's vertex, every size
    assert len({t.shape.d_model for t in plan.trials}) >= 3
    note = lr_note(plan.sweep.train)
    assert (
        note.startswith("lr: 0.004 at every size, the best lr of the search in") and "d2 (d_model 32" in note
    )
    assert [n for n in plan.notes if n.startswith("lr:")] == [note]  # the source; no size extrapolated
    assert lr_note(parse_sweep(_mup_spec()).train) == ""


def test_a_spec_takes_its_lr_from_a_search(tmp_path):
    spec = _mup_spec({"from_search": write_search(tmp_path)})
    plan = make_plan(parse_sweep(spec))
    assert [t.train.lr for t in plan.trials] == [pytest.approx(4e-3, rel=1e-9)] * len(plan.trials)
    assert "the best lr of the search in" in plan.render()
    spec["model"]["parametrization"] = "standard"
    with pytest.raises(
        SpecError, match="train.lr.from_search: .* must be used with model.parametrization: mup"
    ):
        parse_sweep(spec)


@pytest.mark.parametrize(
    "case, kw, model, expected",
    [
        ("standard model", {}, {"parametrization": "standard"},
         "must be used with model.parametrization: mup"),
        ("other width", {"d_model": 64}, {}, "its smallest size d2 is [64] wide, model.base_d_model is 32"),
        (
            "best at the edge",
            {"best": 1.6e-2},
            {},
            "must be a search whose best lr at d2 lies inside its lr grid",
        ),
        ("no folder", None, {}, "must be a readable results folder"),
    ],
)
def test_bad_lr_from_search_names_the_field(tmp_path, case, kw, model, expected):
    path = str(tmp_path / "none") if kw is None else write_search(tmp_path, **kw)
    with pytest.raises(SpecError) as info:  # the model at parse, the folder when resolve reads it
        resolve(parse_sweep(_mup_spec({"from_search": path}, **model), "bad.yaml"))
    message = str(info.value)
    assert message.startswith("bad.yaml: train.lr.from_search: ") and expected in message


def test_mup_hparam_sizes_on_a_width_dial():
    spec = base(sizes=[48, 64])
    spec["model"] = {
        "width": {"min": 32, "max": 128},
        "n_layer": 2,
        "head_dim": 16,
        "seq_len": 128,
        "parametrization": "mup",
    }
    sizes = parse_sweep(spec).hparams.sizes
    assert [(s.label, s.shape.base_d_model, s.shape.width_multiplier) for s in sizes] == [
        ("L2xD48", 32, 1.5),
        ("L2xD64", 32, 2.0),
    ]
    spec["hparams"]["sizes"] = [40]
    with pytest.raises(
        SpecError,
        match=r"hparams.sizes\[0\]: 40 must be a d_model of the width dial: a multiple "
        r"of model.head_dim \(16\)",
    ):
        parse_sweep(spec)
