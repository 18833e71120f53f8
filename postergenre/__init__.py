"""postergenre: predict an anime's genres from its poster.

    import postergenre
    model = postergenre.load("models/anime-posters-final.skops")
    for poster in model.predict(["poster.jpg"]):
        print(poster.genres, poster.probabilities)

`load`, `Model` and `Prediction` predict with a saved model; `split`, `features`, `fit_heads` and `final` are
the steps of `make features heads final` as functions (`postergenre.heads` is the heads' package). They are
imported on first use, so that `postergenre --help` and `import postergenre` stay quick.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from postergenre.api import Model, Prediction, features, final, fit_heads, load, split

__all__ = ["Model", "Prediction", "features", "final", "fit_heads", "load", "split"]


def __getattr__(name: str) -> object:
    if name in __all__:
        from postergenre import api
        return getattr(api, name)
    raise AttributeError(f"module 'postergenre' has no attribute {name!r}")
