"""Heads: a scikit-learn estimator and its settings in a skops file, whose loading rebuilds only trusted types."""
from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

from skops import io as skops_io

from postergenre.core.errors import first_line
from postergenre.modelfiles import ModelFileError, refuse_pickles

# Types a head file may hold beyond skops' defaults: the project's ML-kNN, and the MLP's optimiser state.
# And scikit-learn's stand-in for a genre on every training poster (or none), which one-vs-rest fits then.
HEAD_TYPES = ["postergenre.heads.estimators.MLkNNHead", "postergenre.heads.estimators.MaskedOneVsRest",
              "sklearn.neural_network._stochastic_optimizers.AdamOptimizer", "sklearn.multiclass._ConstantPredictor"]
# Heads saved before the project was one installed package name the same classes by their old module.
RENAMED_MODULES = {"heads.estimators": "postergenre.heads.estimators"}
MAX_HEAD_BYTES = 2**30  # a head file may unzip to at most 1 GiB (ML-kNN keeps its training features)


def write_head(path: Path | str, estimator: object, settings: dict) -> None:
    """The head and its settings (settings.HeadSettings) into `path`: the temporary file of the caller's atomic
    write, which writes the head's arrays and card with it (heads.train.save_head)."""
    skops_io.dump({"estimator": estimator, "settings": settings}, path)


def read_head(path: Path | str) -> tuple[object, dict]:
    """(estimator, settings) of a head file; a file holding any type not trusted is refused unread."""
    path = Path(path)
    refuse_pickles(path)
    try:
        with zipfile.ZipFile(path) as archive:
            unzipped = sum(info.file_size for info in archive.infolist())
        if unzipped > MAX_HEAD_BYTES:
            raise ModelFileError(f"{path}: unzips to {unzipped / 2**30:.1f} GiB, over the 1 GiB a head may hold")
        data = _renamed_modules(path.read_bytes())
        untrusted = sorted(set(skops_io.get_untrusted_types(data=data)) - set(HEAD_TYPES))
        if untrusted:
            raise ModelFileError(f"{path}: holds types a head never has ({', '.join(untrusted[:3])}); not loaded, "
                                 f"since loading them could run code")
        saved = skops_io.loads(data, trusted=HEAD_TYPES)
        return saved["estimator"], saved["settings"]
    except ModelFileError:
        raise
    except Exception as e:  # skops raises many kinds for a damaged file; none of them ran code from it
        raise ModelFileError(f"{path}: not a saved head ({first_line(e)})") from None


def _renamed_modules(data: bytes) -> bytes:
    """A skops file's bytes with the modules of RENAMED_MODULES given their new names in its schema (as data:
    nothing is imported or run), so that heads saved before the rename load as they are."""
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        schema = json.loads(archive.read("schema.json"))
        if not _rename_modules(schema):
            return data
        out = io.BytesIO()
        with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as renamed:
            for info in archive.infolist():
                renamed.writestr(info, json.dumps(schema) if info.filename == "schema.json" else archive.read(info))
    return out.getvalue()


def _rename_modules(node: object) -> bool:
    """Rename, in place, every `__module__` of RENAMED_MODULES in a skops schema; whether any was."""
    renamed = False
    if isinstance(node, dict):
        if node.get("__module__") in RENAMED_MODULES:
            node["__module__"], renamed = RENAMED_MODULES[node["__module__"]], True
        children = node.values()
    else:
        children = node if isinstance(node, list) else []
    for child in children:
        renamed = _rename_modules(child) or renamed
    return renamed
