"""The settings a model file carries, as typed schemas (pydantic): a file whose settings do not fit is refused in
one line, before anything is built from them. Every bound is on what a hostile file could make us allocate.

The same schemas serve the full path (predict.models) and the light one (predict/light.py), which reads a head's
settings straight from its skops file (`head_settings`): this module imports neither torch nor scikit-learn.
"""
from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Annotated, Literal, Union

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, model_validator

from postergenre.core.runspec import RECALL_LEVELS, TIMM_PREFIX, is_backbone_name
from postergenre.modelfiles import MAX_MEMBERS, ModelFileError

MAX_GENRES, MAX_WIDTH, MAX_BLOCKS, MAX_IMAGE_SIZE, MAX_BATCH = 1000, 1024, 8, 1024, 1024


def _backbone(name: str) -> str:
    if not is_backbone_name(name):
        raise ValueError("not a backbone name")
    return name


Genre = Annotated[str, Field(min_length=1, max_length=100)]
Threshold = Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)]
Backbone = Annotated[str, AfterValidator(_backbone)]
Short = Annotated[str, Field(max_length=200)]
Value = Union[None, bool, int, float, Short]  # a parameter or record value: no structure inside
Positive = Annotated[float, Field(gt=0, allow_inf_nan=False)]
Finite = Annotated[float, Field(allow_inf_nan=False)]
RecallLevel = Literal[RECALL_LEVELS]


class _Schema(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class _Model(_Schema):
    """What every model file has: the genres it predicts, a threshold each, and the batch size it runs at."""
    genres: list[Genre] = Field(min_length=1, max_length=MAX_GENRES)
    thresholds: list[Threshold]
    batch_size: int = Field(gt=0, le=MAX_BATCH)
    final: dict | None = None  # how a final model was refit: a record that nothing reads back
    recall_thresholds: dict[RecallLevel, Threshold] | None = None  # a final head's (evaluation/recall.py)

    @model_validator(mode="after")
    def _a_threshold_per_genre(self) -> "_Model":
        if len(self.thresholds) != len(self.genres):
            raise ValueError("one threshold per genre")
        return self


class Fingerprint(_Schema):
    """The features a head was fitted on (extract.features.FINGERPRINT_KEYS and the genres)."""
    backbone: Backbone
    weights_sha256: Short
    image_size: int = Field(ge=16, le=MAX_IMAGE_SIZE)
    preprocessing: Short
    tta: Literal["none", "hflip-mean"]
    genres: list[Genre] = Field(max_length=MAX_GENRES)


Sha256 = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]


class HeadSettings(_Model):
    fingerprint: Fingerprint
    params: dict[Short, Value]
    arrays_sha256: Sha256 | None = None  # the checksum of its arrays file (modelfiles.arrays), which it vouches for


MAX_NGRAMS = 50_000  # columns of each of a title head's vectorisers (heads/titles.py keeps at most this many)
Ngram = Annotated[str, Field(min_length=1, max_length=100)]


class TitleSettings(_Schema):
    """A title head fused with a final poster model (modelfiles/titles.py): its vocabularies and what the fusion
    chose on out-of-fold predictions. The n-gram settings are not here: they are the code's
    (modelfiles.titles.VECTORISERS)."""
    genres: list[Genre] = Field(min_length=1, max_length=MAX_GENRES)
    poster_model_sha256: Sha256  # the poster model file it was fused with: it vouches for no other
    poster_weight: Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)]
    thresholds: list[Threshold]
    recall_thresholds: dict[RecallLevel, Threshold] | None = None
    vocabularies: dict[Literal["char", "word"], list[Ngram]]
    out_of_fold: dict[Short, Finite]  # the fusion's out-of-fold figures, beside the poster model's: a record

    @model_validator(mode="after")
    def _fits(self) -> "TitleSettings":
        if len(self.thresholds) != len(self.genres):
            raise ValueError("one threshold per genre")
        if set(self.vocabularies) != {"char", "word"} or any(len(v) > MAX_NGRAMS or len(set(v)) < len(v)
                                                            for v in self.vocabularies.values()):
            raise ValueError(f"two vocabularies of at most {MAX_NGRAMS} distinct n-grams")
        return self


class Spec(_Schema):
    size: int = Field(ge=16, le=MAX_IMAGE_SIZE)
    mean: list[Finite] = Field(min_length=3, max_length=3)  # one per colour channel
    std: list[Positive] = Field(min_length=3, max_length=3)


class FineTunedBuild(_Schema):
    backbone: Backbone
    freeze: Annotated[str, Field(max_length=50)]


class PosterNetBuild(_Schema):
    widths: list[Annotated[int, Field(gt=0, le=MAX_WIDTH)]] = Field(min_length=1, max_length=MAX_BLOCKS)


class FineTunedSettings(_Model):
    kind: Literal["finetune"]
    build: FineTunedBuild
    spec: Spec


class PosterNetSettings(_Model):
    kind: Literal["cnn"]
    build: PosterNetBuild
    spec: Spec


NetworkSettings = Annotated[Union[FineTunedSettings, PosterNetSettings], Field(discriminator="kind")]


class Member(_Schema):
    file: Short
    weight: int = Field(gt=0, le=100)


class EnsembleSettings(_Model):
    kind: Literal["ensemble"]
    members: dict[Short, Member] = Field(min_length=1, max_length=MAX_MEMBERS)
    combination: dict  # checked by ensemble.combine when it is rebuilt


def parse(kind: object, settings: object, path: object):
    """`settings` as `kind` (a schema above), or one line naming the file and the first thing wrong."""
    try:
        return TypeAdapter(kind).validate_python(settings)
    except ValidationError as e:
        error = e.errors()[0]
        where = ".".join(str(part) for part in error["loc"]) or "settings"
        raise ModelFileError(f"{path}: not a model this version saved ({where}: {error['msg']})") from None


def timm_backbone(settings: HeadSettings | FineTunedSettings | PosterNetSettings) -> str | None:
    """The timm backbone a model would build, if any: refused unless trusted (predict.models.load_model)."""
    backbone = settings.fingerprint.backbone if isinstance(settings, HeadSettings) else \
        getattr(settings.build, "backbone", "")
    return backbone if backbone.startswith(TIMM_PREFIX) else None


MAX_SCHEMA_BYTES = 2**26  # a head's skops schema: its settings and the estimator's structure, not its arrays


def head_settings(path: Path | str) -> HeadSettings:
    """A head file's settings, read from its skops schema as plain JSON values, without skops or scikit-learn
    (which import torch): what the light path trusts. Anything but plain values where the settings are is
    refused in one line."""
    try:
        with zipfile.ZipFile(path) as archive:
            if archive.getinfo("schema.json").file_size > MAX_SCHEMA_BYTES:
                raise ValueError("its schema is larger than a head's")
            schema = json.loads(archive.read("schema.json"))
        settings = _plain(schema["content"]["settings"])
    except (OSError, KeyError, TypeError, ValueError, RecursionError, zipfile.BadZipFile) as e:
        raise ModelFileError(f"{path}: not a saved head ({type(e).__name__}: {e})") from None
    return parse(HeadSettings, settings, path)


def _plain(node: dict) -> object:
    """A value skops wrote as JSON (a dict of str keys, a list, or JSON itself), or a ValueError."""
    loader = node["__loader__"]
    if loader == "JsonNode":
        return json.loads(node["content"])
    if loader == "ListNode":
        return [_plain(item) for item in node["content"]]
    if loader == "DictNode" and all(key["__class__"] == "str" for key in node.get("key_types", {}).get("content", [])):
        return {key: _plain(value) for key, value in node["content"].items()}
    raise ValueError(f"a {loader} where the settings hold plain values")
