"""The training loop: it learns, resumes bit-for-bit, reports exact FLOPs, stops on divergence."""

import dataclasses
import math

import pytest
import torch

from scaling_orchestrator.models.shape import ModelShape
from scaling_orchestrator.models.training.checkpoint import CHECKPOINT_FILE
from scaling_orchestrator.models.training.loop import TrainConfig, batch_at, eval_windows, lr_at, train

TINY = ModelShape(n_layer=2, d_model=64, n_head=2, vocab_size=256, seq_len=64)


def _config(**overrides) -> TrainConfig:
    base = dict(total_tokens=24 * 1024, batch_tokens=1024, micro_batch_tokens=512, eval_every_tokens=4 * 1024,
                eval_tokens=2048, threads=1, device="cpu")
    return TrainConfig(**{**base, **overrides})


@pytest.mark.slow  # trains for seconds
def test_tiny_model_learns_pydoc_bytes(pydoc_bytes):
    config = TrainConfig(total_tokens=100 * 1024, batch_tokens=1024, lr=3e-3, eval_every_tokens=25 * 1024,
                         eval_tokens=4096, threads=1, device="cpu")
    seen = []
    final = train(TINY, config, pydoc_bytes, on_eval=lambda m, ckpt: seen.append(m))
    assert [m.step for m in seen] == [25, 50, 75, 100] and seen[-1] is final
    assert [m.final for m in seen] == [False, False, False, True] and final.status == "ok"
    # Uniform over bytes is ln 256 = 5.55 nats; 100 steps of 1,024 tokens measured 2.86
    # (train 2.82); bound 3.1 leaves a margin for other CPU kernels' rounding.
    assert final.val_loss < 3.1
    assert seen[0].val_loss > final.val_loss
    assert final.val_bpb == pytest.approx(final.val_loss / math.log(2))  # bytes: 1 byte per token
    assert final.tokens == 102_400
    assert final.flops == 102_400 * TINY.flops_per_token()
    assert final.flops_6n == 102_400 * 6 * TINY.param_counts()["non_embedding"]
    assert final.lr_now == pytest.approx(3e-4)  # cosine ends at min_lr_ratio 0.1 of peak


def test_resume_is_bitwise_identical(pydoc_bytes, tmp_path):
    config = _config()
    uninterrupted = []
    train(TINY, config, pydoc_bytes, on_eval=lambda m, ckpt: uninterrupted.append(m))

    class Crash(Exception):
        pass

    def crash_after_step_12(m, ckpt):
        assert ckpt is not None and (tmp_path / CHECKPOINT_FILE).is_file()  # written before on_eval
        if m.step == 12:
            raise Crash

    with pytest.raises(Crash):
        train(TINY, config, pydoc_bytes, on_eval=crash_after_step_12, checkpoint_dir=str(tmp_path))
    resumed = []
    train(TINY, config, pydoc_bytes, on_eval=lambda m, ckpt: resumed.append(m), resume_from=str(tmp_path),
          checkpoint_dir=str(tmp_path))
    assert [m.step for m in resumed] == [16, 20, 24]
    for before, after in zip(uninterrupted[3:], resumed):
        assert (after.train_loss, after.val_loss, after.lr_now) == (
            before.train_loss,
            before.val_loss,
            before.lr_now,
        )
    assert resumed[-1].wall_seconds > resumed[0].wall_seconds
    # Resuming from the final checkpoint trains nothing and reports the final measurement again.
    again = []
    assert (
        train(TINY, config, pydoc_bytes, on_eval=lambda m, ckpt: again.append(m), resume_from=str(tmp_path))
        == resumed[-1]
    )
    assert again == [resumed[-1]]


def test_resume_refuses_a_different_run(pydoc_bytes, tmp_path):
    train(TINY, _config(total_tokens=4096), pydoc_bytes, checkpoint_dir=str(tmp_path))
    with pytest.raises(ValueError, match="TrainConfig.lr=0.001 but the checkpoint has 0.003"):
        train(TINY, _config(total_tokens=4096, lr=1e-3), pydoc_bytes, resume_from=str(tmp_path))
    with pytest.raises(ValueError, match="no checkpoint.pt"):
        train(TINY, _config(), pydoc_bytes, resume_from=str(tmp_path / "missing"))


def test_gradient_accumulation_matches_one_big_batch(pydoc_bytes):
    whole = train(TINY, _config(total_tokens=4096, micro_batch_tokens=0), pydoc_bytes)
    accumulated = train(TINY, _config(total_tokens=4096, micro_batch_tokens=256), pydoc_bytes)
    assert accumulated.train_loss == pytest.approx(whole.train_loss, rel=1e-5)
    assert accumulated.val_loss == pytest.approx(whole.val_loss, rel=1e-4)


def test_huge_learning_rate_diverges(pydoc_bytes):
    reports = []
    final = train(
        TINY, _config(lr=1e4, warmup_fraction=0.0), pydoc_bytes, on_eval=lambda m, c: reports.append((m, c))
    )
    assert final.status == "diverged" and final.final
    assert math.isnan(final.val_loss) and not math.isfinite(final.train_loss)
    assert final.step < 24 and final.tokens == final.step * 1024
    assert reports[-1] == (final, None)  # reported, with no checkpoint of a broken model


def test_nan_held_out_loss_is_reported_once_as_diverged(pydoc_bytes, tmp_path, monkeypatch):
    # Steps stay finite but the 2nd evaluation (step 8) gives a NaN val loss: that step is
    # reported once, as the final "diverged" row, never first as an "ok" row with a NaN loss.
    import scaling_orchestrator.models.training.loop as loop

    evaluate, calls = loop.evaluate, []

    def nan_on_second(*args):
        calls.append(evaluate(*args))
        return math.nan if len(calls) == 2 else calls[-1]

    monkeypatch.setattr(loop, "evaluate", nan_on_second)
    reports = []
    final = train(
        TINY,
        _config(),
        pydoc_bytes,
        on_eval=lambda m, c: reports.append((m, c)),
        checkpoint_dir=str(tmp_path / "ckpt"),
    )
    assert [(m.step, m.status, m.final) for m, _ in reports] == [(4, "ok", False), (8, "diverged", True)]
    assert math.isfinite(reports[0][0].val_loss) and reports[0][1] is not None
    assert reports[-1] == (final, None) and math.isnan(final.val_loss) and math.isfinite(final.train_loss)
    assert len(calls) == 2  # training stopped at the NaN evaluation


def test_diverging_run_reports_exactly_one_row(pydoc_bytes):
    reports = []
    train(TINY, _config(lr=1e4, warmup_fraction=0.0), pydoc_bytes, on_eval=lambda m, c: reports.append(m))
    # Adam steps of 1e4 per weight give a NaN train loss at step 2, before the first evaluation
    # (step 4): one report, the diverged one.
    assert [(m.step, m.status, m.final) for m in reports] == [(2, "diverged", True)]


def test_wall_and_throughput_accounting_on_a_fake_clock(pydoc_bytes, monkeypatch):
    # A clock that only moves inside a training step (2 s) and an evaluation (3 s): set-up,
    # checkpoints and reporting take no time. An interval of 4 steps is then 8 s of training
    # (tokens_per_second = 4 x 1,024 / 8 = 512) and 11 s of wall, which accumulates.
    import types

    import scaling_orchestrator.models.training.loop as loop

    now = [0.0]
    monkeypatch.setattr(loop, "time", types.SimpleNamespace(perf_counter=lambda: now[0]))

    def taking(seconds, fn):
        def timed(*args):
            now[0] += seconds
            return fn(*args)

        return timed

    monkeypatch.setattr(loop, "optimizer_step", taking(2.0, loop.optimizer_step))
    monkeypatch.setattr(loop, "evaluate", taking(3.0, loop.evaluate))
    reports = []
    train(TINY, _config(), pydoc_bytes, on_eval=lambda m, c: reports.append(m))
    assert [(m.step, m.wall_seconds, m.tokens_per_second) for m in reports] == [
        (4 * k, 11.0 * k, 512.0) for k in range(1, 7)
    ]
    # A NaN loss on the 3rd step (see below): wall counts the failed step too (3 x 2 s),
    # throughput only the two finished ones (2,048 tokens / 4 s, not / 6 s = 341).
    diverged = train(TINY, _config(lr=1e4, warmup_fraction=0.0), pydoc_bytes)
    assert (diverged.step, diverged.wall_seconds, diverged.tokens_per_second) == (2, 6.0, 512.0)


def test_schedules_pinned():
    config = TrainConfig(total_tokens=1000, batch_tokens=1, lr=1.0)  # 1000 steps, 50 warmup
    assert [lr_at(s, config) for s in (0, 49)] == [pytest.approx(1 / 50), 1.0]
    assert lr_at(999, config) == pytest.approx(0.1)
    # Halfway through the cosine (step 50 + 949/2) the rate is the mean of peak and floor.
    assert lr_at(50 + 949 / 2, config) == pytest.approx(0.55)
    wsd = dataclasses.replace(config, schedule="wsd")  # stable until step 800, then linear to 0.1
    assert [lr_at(s, wsd) for s in (100, 799)] == [1.0, 1.0]
    assert lr_at(899, wsd) == pytest.approx(1.0 - 0.9 * 100 / 200) and lr_at(999, wsd) == pytest.approx(0.1)
    assert lr_at(999, dataclasses.replace(config, schedule="constant")) == 1.0


def test_batches_are_a_function_of_seed_and_step(pydoc_bytes):
    a, b = batch_at(pydoc_bytes.train, 64, 8, 0, 5), batch_at(pydoc_bytes.train, 64, 8, 0, 5)
    assert a.shape == (8, 65) and torch.equal(a, b)
    assert not torch.equal(a, batch_at(pydoc_bytes.train, 64, 8, 0, 6))
    windows = eval_windows(pydoc_bytes.val, 64, 1000)  # 1000 // 64 = 15 windows, consecutive
    assert windows.shape == (15, 65)
    assert torch.equal(windows[1, :], torch.from_numpy(pydoc_bytes.val[64:129].astype("int64")))


@pytest.mark.parametrize(
    "fields, named",
    [
        (dict(total_tokens=1000, batch_tokens=300), "TrainConfig.total_tokens=1000"),
        (dict(micro_batch_tokens=300), "TrainConfig.micro_batch_tokens=300"),
        (dict(schedule="linear"), "TrainConfig.schedule='linear'"),
        (dict(lr=-1.0), "TrainConfig.lr=-1.0"),
        (dict(device="tpu"), "TrainConfig.device='tpu'"),
    ],
)
def test_bad_configs_name_the_field(fields, named):
    with pytest.raises(ValueError, match=named.replace(".", r"\.")):
        _config(**fields)


def test_bad_combinations_name_the_field(pydoc_bytes):
    with pytest.raises(ValueError, match="TrainConfig.batch_tokens=1000: must be a multiple of seq_len=64"):
        train(TINY, _config(total_tokens=2000, batch_tokens=1000, micro_batch_tokens=0), pydoc_bytes)
    with pytest.raises(ValueError, match="ModelShape.vocab_size=128"):
        train(dataclasses.replace(TINY, vocab_size=128), _config(), pydoc_bytes)
