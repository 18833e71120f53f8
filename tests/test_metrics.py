"""Metrics against values computed by hand (worked out in the comments)."""
import numpy as np
import pytest

from postergenre.evaluation.calibration import expected_calibration_error, reliability
from postergenre.evaluation.metrics import (choose_thresholds, evaluate, evaluate_baselines, most_frequent_sets,
                                            prior_scores, score)
from postergenre.evaluation.sets import predict_sets

GENRES = ["A", "B", "C"]
# Genre C has no positives: its AP is undefined and must not enter the macro mAP.
Y = np.array([[1, 0, 0], [0, 1, 0], [1, 1, 0], [0, 1, 0]], dtype=np.uint8)
S = np.array([[0.9, 0.2, 0.1], [0.3, 0.8, 0.4], [0.6, 0.4, 0.7], [0.7, 0.6, 0.2]])


def test_predicted_sets_keep_the_top_genre():
    # nothing reaches 0.95, so each poster keeps only its top genre
    assert predict_sets(S, 0.95).tolist() == [[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 0, 0]]


def test_hand_computed_metrics():
    predicted = predict_sets(S, 0.5)  # [[1,0,0],[0,1,0],[1,0,1],[1,1,0]]
    result = score(Y, S, predicted, GENRES)
    m = result["overall"]
    # TP 4, FP 2, FN 1
    assert m["precision_micro"] == pytest.approx(4 / 6)
    assert m["recall_micro"] == pytest.approx(4 / 5)
    assert m["f1_micro"] == pytest.approx(8 / 11)
    # per genre F1: A 0.8, B 0.8, C 0 (one false positive, no positives)
    assert m["f1_macro"] == pytest.approx(1.6 / 3)
    # per poster F1: 1, 1, 1/2, 2/3
    assert m["f1_samples"] == pytest.approx((1 + 1 + 0.5 + 2 / 3) / 4)
    assert m["hamming_loss"] == pytest.approx(3 / 12)
    assert m["subset_accuracy"] == pytest.approx(0.5)
    assert m["at_least_one_right"] == pytest.approx(1.0)
    # top-1 genres: A ok, B ok, C wrong, A wrong
    assert m["top1_accuracy"] == pytest.approx(0.5)
    assert m["precision_at_1"] == pytest.approx(0.5)
    assert m["top3_accuracy"] == pytest.approx(1.0)
    assert m["precision_at_3"] == pytest.approx(5 / 12)
    # AP(A): ranks 0.9+, 0.7-, 0.6+, 0.3- -> (1 + 2/3) / 2; AP(B) = 1; AP(C) undefined
    assert m["mAP_macro"] == pytest.approx((5 / 6 + 1) / 2)
    # micro AP over all 12 cells: 0.2*1 + 0.2*1 + 0.4*(4/6) + 0.2*(5/8)
    assert m["mAP_micro"] == pytest.approx(0.2 + 0.2 + 0.4 * 4 / 6 + 0.2 * 5 / 8)

    per_genre = {g["genre"]: g for g in result["per_genre"]}
    # ECE(A): each score alone in its bin, |0.9 - 1|, |0.3 - 0|, |0.6 - 1|, |0.7 - 0| -> 1.5 / 4
    assert per_genre["A"] == {"genre": "A", "support": 2, "precision": pytest.approx(2 / 3), "recall": 1.0,
                              "f1": pytest.approx(0.8), "ap": pytest.approx(5 / 6), "ece": pytest.approx(0.375)}
    assert per_genre["C"]["support"] == 0 and per_genre["C"]["ap"] is None


def test_thresholds_come_from_validation_only():
    y_val = np.array([[1, 0], [0, 1], [1, 1]], dtype=np.uint8)
    s_val = np.array([[0.8, 0.3], [0.2, 0.6], [0.7, 0.65]])
    t = choose_thresholds(y_val, s_val)
    assert 0.3 < t[0] <= 0.6 and t[0] == t[1]  # one global threshold that separates validation
    per_genre = choose_thresholds(y_val, s_val, per_genre=True)
    assert 0.2 < per_genre[0] <= 0.7 and 0.3 < per_genre[1] <= 0.6

    y_test = np.array([[1, 0], [0, 1]], dtype=np.uint8)
    one = evaluate(y_val, s_val, y_test, np.array([[0.9, 0.1], [0.1, 0.9]]), ["a", "b"])
    other = evaluate(y_val, s_val, y_test, np.array([[0.1, 0.9], [0.9, 0.1]]), ["a", "b"])
    assert one["thresholds"] == other["thresholds"]
    assert one["test"]["overall"]["f1_micro"] == 1.0 and other["test"]["overall"]["f1_micro"] == 0.0


def test_baselines():
    y_train = np.array([[1, 1, 0], [1, 0, 0], [1, 1, 0], [0, 1, 1]], dtype=np.uint8)
    assert prior_scores(y_train, 2).tolist() == [[0.75, 0.75, 0.25]] * 2
    # 7 labels over 4 posters: k = round(1.75) = 2; the two most frequent are A and B
    assert most_frequent_sets(y_train, 1, 2).tolist() == [[1, 1, 0]]
    results = evaluate_baselines(y_train, Y, Y, GENRES)
    assert set(results) == {"prior", "top2-frequent"}
    # constant scores rank nothing: AP(A) = prevalence 2/4, AP(B) = 3/4
    assert results["prior"]["test"]["overall"]["mAP_macro"] == pytest.approx((0.5 + 0.75) / 2)
    # predicting {A, B} for all four posters: TP 5, FP 3, FN 0
    assert results["top2-frequent"]["test"]["overall"]["f1_micro"] == pytest.approx(10 / 13)


def test_calibration_error_is_small_for_honest_probabilities_and_large_for_overconfident_ones():
    """Labels drawn with the probabilities given: ECE near 0, the diagram on the diagonal. The same labels with
    probabilities pushed towards 0 and 1: ECE large."""
    rng = np.random.default_rng(0)
    p = rng.random((4000, 5))
    y = (rng.random(p.shape) < p).astype(np.uint8)
    assert expected_calibration_error(y, p) < 0.02
    mean_p, frequency, counts = reliability(y, p)
    assert counts.sum() == y.size and np.abs(mean_p - frequency).max() < 0.03
    overconfident = np.where(p > 0.5, np.sqrt(p), p ** 2)
    assert expected_calibration_error(y, overconfident) > 0.1
    result = score(y, p, predict_sets(p, 0.5), list("abcde"))
    assert result["overall"]["ece"] == pytest.approx(expected_calibration_error(y, p))
    assert result["per_genre"][0]["ece"] == pytest.approx(expected_calibration_error(y[:, 0], p[:, 0]))
