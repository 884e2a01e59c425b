"""Batch efficiency as issue 10 defines it: the questions asked, and the figure from the rounds."""

from __future__ import annotations

import pytest

from meshauth.bench import batch_path, workload


def _mode(per_path: float, per_service: float) -> dict[str, float]:
    return {"per_path_cpu_s": per_path, "per_service_cpu_s": per_service}


def test_figure_is_the_median_of_per_round_ratios() -> None:
    rounds = [
        {"single": _mode(4000, 10000), "batched": _mode(20000, 40000)},  # 5×, 4×
        {"single": _mode(4000, 10000), "batched": _mode(28000, 30000)},  # 7×, 3×
        {"single": _mode(5000, 10000), "batched": _mode(30000, 50000)},  # 6×, 5×
    ]
    out = batch_path.summarize(rounds)
    assert out["ratio_path"] == pytest.approx(6.0)
    assert out["ratio_path_per_round"] == pytest.approx([5.0, 7.0, 6.0])
    assert out["ratio_service"] == pytest.approx(4.0)


def test_questions_come_from_the_harness_workload() -> None:
    asked = batch_path.questions(2000)
    assert asked == batch_path.questions(2000)
    for subject, action, resource in asked:
        assert subject["type"] == "User" and 0 <= int(subject["id"][1:]) < workload.USERS
        r = int(resource["id"][1:])
        assert resource["type"] == f"R{r % workload.RESOURCE_TYPES}" and r < workload.RESOURCES
        assert 0 <= int(action[1:]) < workload.ACTIONS
    # Zipf: the most popular user is asked far more often than a uniform draw would (1 in 10,000)
    top = sum(1 for s, _, _ in asked if s["id"] == "u0")
    assert top > 50


def test_explicit_batches_are_reported_beside_the_figure_not_instead() -> None:
    """With explicit check_many rounds, their ratio is added under its own name; ratio_path stays
    the micro-batched figure."""
    rounds = [
        {"single": _mode(4000, 10000), "batched": _mode(20000, 40000), "explicit": _mode(36000, 50000)},
        {"single": _mode(4000, 10000), "batched": _mode(28000, 30000), "explicit": _mode(40000, 60000)},
        {"single": _mode(5000, 10000), "batched": _mode(30000, 50000), "explicit": _mode(40000, 70000)},
    ]
    out = batch_path.summarize(rounds)
    assert out["ratio_path"] == pytest.approx(6.0)
    assert out["ratio_path_explicit"] == pytest.approx(9.0)
    assert out["ratio_path_explicit_per_round"] == pytest.approx([9.0, 10.0, 8.0])
    assert out["ratio_service_explicit"] == pytest.approx(6.0)


def test_rounds_without_explicit_batches_report_only_the_figure() -> None:
    """An older results file (single and batched only) summarizes as before."""
    out = batch_path.summarize([{"single": _mode(4000, 10000), "batched": _mode(20000, 40000)}])
    assert out["ratio_path"] == pytest.approx(5.0)
    assert "ratio_path_explicit" not in out
