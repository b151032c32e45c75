"""Classification evaluator: exact result block, macro F1, per-class table, cmat, sync."""

import numpy as np
import pytest
import torch

from dassl.config import get_cfg_default
from dassl.evaluation import Classification, build_evaluator, macro_f1_score


def _logits(pred, n_cls):
    return torch.nn.functional.one_hot(torch.tensor(pred), n_cls).float()


def _reference_macro_f1(t, p):
    """Independent per-class precision/recall formulation."""
    scores = []
    for c in sorted(set(t)):
        tp = sum(1 for a, b in zip(t, p) if a == c and b == c)
        npred = sum(1 for b in p if b == c)
        ntrue = sum(1 for a in t if a == c)
        prec = tp / npred if npred else 0.0
        rec = tp / ntrue
        scores.append(2 * prec * rec / (prec + rec) if prec + rec else 0.0)
    return sum(scores) / len(scores)


def test_macro_f1_matches_reference():
    rng = np.random.default_rng(0)
    for _ in range(20):
        t = rng.integers(0, 5, size=30).tolist()
        p = rng.integers(0, 7, size=30).tolist()  # includes labels absent from y_true
        assert macro_f1_score(t, p) == pytest.approx(_reference_macro_f1(t, p), abs=1e-12)


def test_result_block_exact(capsys):
    cfg = get_cfg_default()
    ev = build_evaluator(cfg, lab2cname={0: "cat", 1: "dog", 2: "eel"})
    assert isinstance(ev, Classification)
    t = [0, 0, 1, 1, 2]
    p = [0, 1, 1, 1, 0]
    ev.process(_logits(p[:3], 3), torch.tensor(t[:3]))
    ev.process(_logits(p[3:], 3), torch.tensor(t[3:]))
    res = ev.evaluate()
    assert list(res) == ["accuracy", "error_rate", "macro_f1"]
    assert res["accuracy"] == pytest.approx(60.0)
    f1 = 100 * _reference_macro_f1(t, p)
    out = capsys.readouterr().out
    assert out == (
        "Loading evaluator: Classification\n=> result\n* total: 5\n* correct: 3\n"
        f"* accuracy: 60.0%\n* error: 40.0%\n* macro_f1: {f1:.1f}%\n"
    )


def test_thousands_per_class_and_cmat(tmp_path, capsys):
    ev = Classification(
        None,
        lab2cname={0: "a", 1: "b"},
        per_class_result=True,
        compute_cmat=True,
        output_dir=str(tmp_path),
    )
    t = torch.tensor([0] * 1500 + [1] * 500)
    p = [0] * 1200 + [1] * 300 + [1] * 500
    ev.process(_logits(p, 2), t)
    res = ev.evaluate()
    out = capsys.readouterr().out
    assert "* total: 2,000\n* correct: 1,700\n* accuracy: 85.0%\n" in out
    assert "=> per-class result\n* class: 0 (a)\ttotal: 1,500\tcorrect: 1,200\tacc: 80.0%\n" in out
    assert "* class: 1 (b)\ttotal: 500\tcorrect: 500\tacc: 100.0%\n* average: 90.0%\n" in out
    assert res["perclass_accuracy"] == pytest.approx(90.0)
    assert f"Confusion matrix is saved to {tmp_path}/cmat.pt" in out
    cmat = torch.load(tmp_path / "cmat.pt", weights_only=False)
    np.testing.assert_allclose(cmat, [[0.8, 0.2], [0.0, 1.0]])


def test_sync_merges_ranks_like_one_process():
    t = [0, 1, 2, 2, 1, 0, 1]
    p = [0, 2, 2, 1, 1, 0, 0]
    single = Classification(None)
    single.process(_logits(p, 3), torch.tensor(t))
    shards = [Classification(None), Classification(None)]
    shards[0].process(_logits(p[:4], 3), torch.tensor(t[:4]))
    shards[1].process(_logits(p[4:], 3), torch.tensor(t[4:]))
    states = [s.state() for s in shards]
    for s in shards:
        s.sync(lambda obj: states)
        assert s.evaluate() == single.evaluate()


def test_errors():
    with pytest.raises(ValueError, match="lab2cname"):
        Classification(None, per_class_result=True)
    with pytest.raises(RuntimeError, match="process"):
        Classification(None).evaluate()
    cfg = get_cfg_default()
    cfg.TEST.EVALUATOR = "Clasification"
    with pytest.raises(ValueError, match="Classification"):
        build_evaluator(cfg)
