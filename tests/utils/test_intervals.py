"""Welch intervals over seeds and the table of differences with their intervals."""
from collections import OrderedDict

import pytest
from scipy import stats

from maskrcnn_benchmark.utils import intervals


def test_welch_interval_matches_the_hand_computation_and_scipy():
    # reference 1, 2, 3 (var 1), other 4, 6, 8 (var 4): diff 4, se^2 = 1/3 + 4/3, df = (5/3)^2 / ((1/3)^2/2 +
    # (4/3)^2/2) = 50/17, half width t_{0.975}(50/17) * sqrt(5/3) = 3.21876 * 1.29099 = 4.15540
    out = intervals.welch_interval([1, 2, 3], [4, 6, 8])
    assert out["diff"] == pytest.approx(4.0)
    assert out["df"] == pytest.approx(50 / 17)
    assert (out["low"], out["high"]) == pytest.approx((4 - 4.155400, 4 + 4.155400), abs=1e-5)
    reference = stats.ttest_ind([4, 6, 8], [1, 2, 3], equal_var=False)
    assert (out["low"], out["high"]) == pytest.approx(tuple(reference.confidence_interval(0.95)))
    assert out["p"] == pytest.approx(reference.pvalue) and out["p"] == pytest.approx(0.054787, abs=1e-6)
    # a higher confidence widens the interval
    wide = intervals.welch_interval([1, 2, 3], [4, 6, 8], confidence=0.99)
    assert wide["low"] < out["low"] and wide["high"] > out["high"]


def test_welch_interval_from_summary_statistics_equals_the_one_from_values():
    values = intervals.welch_interval([62.0, 62.5, 61.9], [61.6, 62.3, 61.8])
    from_stats = intervals.welch_interval_from_stats(62.133333, 0.321455, 3, 61.9, 0.360555, 3)
    assert (from_stats["low"], from_stats["high"], from_stats["p"]) == pytest.approx(
        (values["low"], values["high"], values["p"]), abs=1e-4)


@pytest.mark.parametrize("reference, other", [([62.0], [61.0, 63.0]), ([62.0, 63.0], [61.0])])
def test_welch_interval_with_one_run_says_so_instead_of_inventing_a_spread(reference, other):
    out = intervals.welch_interval(reference, other)
    assert out["low"] is None and out["high"] is None and out["p"] is None
    assert out["note"].startswith("n<2")
    assert out["diff"] == pytest.approx(sum(other) / len(other) - sum(reference) / len(reference))


def test_welch_interval_without_any_spread_has_no_interval():
    out = intervals.welch_interval([50.0, 50.0], [51.0, 51.0])
    assert out["low"] is None and "no spread" in out["note"]


def test_differences_table_lists_every_model_and_task_with_both_intervals():
    runs = OrderedDict([
        ("baseline", [{"bbox": {"AP": 0.60}, "segm": {"AP": 0.50}}, {"bbox": {"AP": 0.62}, "segm": {"AP": 0.51}}]),
        ("gan", [{"bbox": {"AP": 0.64}, "segm": {"AP": 0.49}}, {"bbox": {"AP": 0.66}, "segm": {"AP": 0.48}}]),
        ("single", [{"bbox": {"AP": 0.61}, "segm": {"AP": 0.50}}]),
    ])
    welch = intervals.seed_differences(runs)
    assert list(welch) == ["gan", "single"] and list(welch["gan"]) == ["bbox", "segm"]
    expected = intervals.welch_interval([60.0, 62.0], [64.0, 66.0])
    assert welch["gan"]["bbox"]["low"] == pytest.approx(expected["low"])
    boot = {"gan": {"bbox": {"diff": 4.0, "low": 1.3, "high": 6.5, "num_samples": 50, "num_images": 10,
                             "seed": 3, "confidence": 0.95}}}
    text = intervals.format_differences(welch, boot, "t")
    gan_box = [line for line in text.splitlines() if line.startswith("gan - baseline") and "box AP" in line][0]
    assert "+4.0" in gan_box and "[{:+.1f}, {:+.1f}]".format(expected["low"], expected["high"]) in gan_box
    assert gan_box.rstrip().endswith("[+1.3, +6.5]")
    single = [line for line in text.splitlines() if line.startswith("single - baseline")][0]
    assert "n/a (n<2" in single
    assert "50 resamples of the 10 test images (seed 3)" in text
    markdown = intervals.format_differences(welch, None, "t", markdown=True)
    assert "| gan - baseline | mask AP | -2.0 |" in markdown and "bootstrap: not computed" in markdown


def test_paired_interval_is_the_t_interval_of_the_per_seed_changes():
    before, after = [47.0, 48.5, 47.9], [48.1, 48.9, 49.4]  # changes 1.1, 0.4, 1.5
    out = intervals.paired_interval(before, after)
    reference = stats.ttest_rel(after, before)
    assert out["diff"] == pytest.approx(1.0) and out["df"] == 2
    assert (out["low"], out["high"]) == pytest.approx(tuple(reference.confidence_interval(0.95)))
    assert out["p"] == pytest.approx(reference.pvalue)
    assert intervals.paired_interval([1.0], [2.0])["note"].startswith("n<2")
    with pytest.raises(ValueError, match="as many values"):
        intervals.paired_interval([1.0, 2.0], [2.0])
