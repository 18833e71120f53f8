"""Label co-occurrence by stacking: does a second stage that sees every genre's score help?

First stage: the logistic head, tuned on validation mAP as `make heads` tunes it. Its scores on the
training part come from 5-fold cross-validation, so the second stage learns from scores like those
it will see. Second stage: per genre, a logistic regression on the standardised logits of all
genres (so "Mecha" can lift "Sci-Fi"), its C chosen on validation mAP.

    python ablations/cooccurrence.py features/anime-posters-efficientnet_lite0_multiscale.h5
"""
import sys
import warnings
from pathlib import Path

import numpy as np
from scipy.special import logit
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import KFold, cross_val_predict
from sklearn.multiclass import OneVsRestClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from postergenre.evaluation.metrics import evaluate, macro_map  # noqa: E402
from postergenre.evaluation.results import overall
from postergenre.extract.features import load_features  # noqa: E402
from postergenre.heads.estimators import HEADS  # noqa: E402
from postergenre.heads.train import tune  # noqa: E402


def main(path: str) -> None:
    warnings.simplefilter("ignore", ConvergenceWarning)
    features = load_features(path)
    (X_train, Y_train), (X_val, Y_val), (X_test, Y_test) = (features.part(p) for p in ("train", "val", "test"))
    estimator, grid = HEADS["logistic"]
    first, params, _ = tune(estimator, grid, X_train, Y_train, X_val, Y_val)
    oof = cross_val_predict(clone(first), X_train, Y_train, cv=KFold(5, shuffle=True, random_state=0),
                            method="predict_proba")
    S_train, S_val, S_test = (logit(np.clip(s, 1e-6, 1 - 1e-6))
                              for s in (oof, first.predict_proba(X_val), first.predict_proba(X_test)))
    best, best_val = None, -1.0
    for C in (0.01, 0.1, 1.0):
        second = make_pipeline(StandardScaler(), OneVsRestClassifier(LogisticRegression(C=C, max_iter=2000)))
        second.fit(S_train, Y_train)
        val_map = macro_map(Y_val, second.predict_proba(S_val))
        print(f"second stage C={C}: val mAP {val_map:.3f}")
        if val_map > best_val:
            best, best_val = second, val_map
    for name, val_scores, test_scores in (("logistic head", first.predict_proba(X_val), first.predict_proba(X_test)),
                                          ("stacked", best.predict_proba(S_val), best.predict_proba(S_test))):
        r = evaluate(Y_val, val_scores, Y_test, test_scores, features.genres)
        print(f"{features.attrs['dataset']} {name}: val mAP {overall(r, 'val'):.3f}, "
              f"test mAP {overall(r, 'test'):.3f}, test F1 µ {overall(r, 'test', 'f1_micro'):.3f}")


if __name__ == "__main__":
    main(sys.argv[1])
