"""The object and its classification: object, step, pipeline, taxonomy, probability,
feature_version, feature."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from .._types.schema import Column, Index, model
from ._common import object_oid, step_ref, ts

__all__ = ["Object", "Step", "Pipeline", "Taxonomy", "Probability", "FeatureVersion", "Feature"]

# The aliases above must be globals of this module: @model resolves the (string) annotations at decoration
# time in the namespace of the module that declares the class.


@model(
    "object",
    distribute_by="oid",
    primary_key=["oid"],
    indexes=[
        Index("ix_object_ndet", ["ndet"]),
        Index("ix_object_firstmjd", ["firstmjd"]),
        Index("ix_object_g_r_max", ["g_r_max"]),
        Index("ix_object_g_r_mean_corr", ["g_r_mean_corr"]),
        Index("ix_object_meanra", ["meanra"]),
        Index("ix_object_meandec", ["meandec"]),
    ],
)
@dataclass(kw_only=True)
class Object:
    """An astronomical object (a ZTF ``oid``) with its aggregated statistics."""

    oid: str
    ndethist: int | None = None
    ncovhist: int | None = None
    mjdstarthist: float | None = None
    mjdendhist: float | None = None
    corrected: bool | None = None
    stellar: bool | None = None
    ndet: int | None = None
    g_r_max: float | None = None
    g_r_max_corr: float | None = None
    g_r_mean: float | None = None
    g_r_mean_corr: float | None = None
    meanra: float | None = None
    meandec: float | None = None
    sigmara: float | None = None
    sigmadec: float | None = None
    deltajd: float | None = None
    firstmjd: float | None = None
    lastmjd: float | None = None
    step_id_corr: str | None = None
    diffpos: bool | None = None
    reference_change: bool | None = None

    def __repr__(self) -> str:
        return f"<Object(oid='{self.oid}')>"


@model("step", reference=True, primary_key=["step_id"])
@dataclass(kw_only=True)
class Step:
    """A pipeline step and its version."""

    step_id: str
    name: str
    version: str
    comments: str
    date: ts


@model("pipeline", reference=True, primary_key=["pipeline_id"])
@dataclass(kw_only=True)
class Pipeline:
    """A pipeline: the steps that produced a set of results."""

    pipeline_id: str
    step_id_corr: str | None = None
    step_id_feat: str | None = None
    step_id_clf: str | None = None
    step_id_out: str | None = None
    step_id_stamp: str | None = None
    date: ts


@model("taxonomy", reference=True, primary_key=["classifier_name", "classifier_version"])
@dataclass(kw_only=True)
class Taxonomy:
    """The classes a classifier version can assign."""

    classifier_name: str
    classifier_version: str
    classes: list[str]


@model(
    "probability",
    distribute_by="oid",
    colocate_with="object",
    primary_key=["oid", "class_name", "classifier_name", "classifier_version"],
    indexes=[
        Index("ix_probabilities_oid", ["oid"], using="hash"),
        Index("ix_probabilities_probability", ["probability"]),
        Index("ix_probabilities_ranking", ["ranking"]),
        Index("ix_classification_rank1", ["ranking"], where="ranking = 1"),
    ],
)
@dataclass(kw_only=True)
class Probability:
    """The probability that an object belongs to a class, by classifier."""

    oid: object_oid
    class_name: str
    classifier_name: str
    classifier_version: str
    probability: float
    ranking: int


@model("feature_version", reference=True, primary_key=["version"])
@dataclass(kw_only=True)
class FeatureVersion:
    """A version of the feature set and the steps that computed it."""

    version: str
    step_id_feature: step_ref | None = None
    step_id_preprocess: step_ref | None = None


@model(
    "feature",
    distribute_by="oid",
    colocate_with="object",
    primary_key=["oid", "name", "fid", "version"],
    indexes=[Index("ix_feature_oid_2", ["oid"], using="hash")],
)
@dataclass(kw_only=True)
class Feature:
    """One feature value of an object in one band."""

    oid: object_oid
    name: str
    value: float | None = None
    fid: int
    version: Annotated[str, Column(references="feature_version.version")]
