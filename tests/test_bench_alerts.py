"""The alert reader and the synthetic night of ``bench/alerts.py``: mapping, determinism, re-deliveries."""

from __future__ import annotations

import itertools
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from bench.alerts import (
    DQ_RANGES,
    INT_RANGES,
    MJD_OFFSET,
    SYNTHETIC_CANDID_BASE,
    alert_to_rows,
    alerts_dir,
    isdiffpos_sign,
    read_packets,
    synthetic_night,
)
from dbplugins._types.schema import table_of
from dbplugins.models import Dataquality, Detection, NonDetection, Object

# objectId -> (prv detections, prv non-detections), from the data README.
README_COUNTS = {"ZTF17aaacxxf": (22, 6), "ZTF17aaajnnn": (0, 11), "ZTF18abmmoot": (10, 14)}


@pytest.fixture(scope="module")
def packets() -> dict[str, dict[str, Any]]:
    return {alert["objectId"]: alert for alert in read_packets()}


def test_alerts_dir_has_the_packets_and_honours_the_override(monkeypatch: pytest.MonkeyPatch) -> None:
    assert len(list(alerts_dir().glob("*.avro"))) == 3
    repo = Path(__file__).resolve().parents[1]
    assert alerts_dir().resolve().is_relative_to(repo)  # shipped in the repository, nothing read beside it
    monkeypatch.setenv("DBP_ALERTS_DIR", "/nonexistent/alerts")
    assert str(alerts_dir()) == "/nonexistent/alerts"
    with pytest.raises(FileNotFoundError, match="DBP_ALERTS_DIR"):
        next(read_packets())


def test_real_packets_map_to_the_readme_counts(packets: dict[str, dict[str, Any]]) -> None:
    assert set(packets) == set(README_COUNTS)
    for oid, (prv_det, prv_non) in README_COUNTS.items():
        rows = alert_to_rows(packets[oid])
        assert len(rows.detections) == prv_det + 1  # the candidate is a detection too
        assert len(rows.non_detections) == prv_non
        assert len(rows.dataquality) == prv_det + 1
        assert {d["oid"] for d in rows.detections} == {oid}
        assert rows.object["oid"] == oid


def test_candidate_detection_fields(packets: dict[str, dict[str, Any]]) -> None:
    alert = packets["ZTF18abmmoot"]
    cand = alert["candidate"]
    det = alert_to_rows(alert).detections[-1]
    assert det["candid"] == alert["candid"] == cand["candid"]
    assert det["mjd"] == cand["jd"] - 2400000.5
    assert det["isdiffpos"] == -1  # 'f'
    assert det["pid"] == float(cand["pid"]) and isinstance(det["pid"], float)
    assert det["has_stamp"] is True and det["parent_candid"] is None
    assert (det["ra"], det["dec"], det["magpsf"], det["fid"]) == (cand["ra"], cand["dec"], cand["magpsf"], 2)
    assert det["drb"] == cand["drb"] and det["rfid"] == cand["rfid"]


def test_prv_detections_and_non_detections(packets: dict[str, dict[str, Any]]) -> None:
    alert = packets["ZTF17aaacxxf"]  # schema 3.2, isdiffpos 't', 'f', '0'
    rows = alert_to_rows(alert)
    by_candid = {d["candid"]: d for d in rows.detections}
    for entry in alert["prv_candidates"]:
        mjd = entry["jd"] - MJD_OFFSET
        if entry["candid"] is None:
            assert {
                "oid": "ZTF17aaacxxf",
                "fid": entry["fid"],
                "mjd": mjd,
                "diffmaglim": entry["diffmaglim"],
            } in (rows.non_detections)
            continue
        det = by_candid[entry["candid"]]
        assert det["mjd"] == mjd
        assert det["isdiffpos"] == (1 if entry["isdiffpos"] in ("t", "1") else -1)
        assert det["parent_candid"] == alert["candid"] and det["has_stamp"] is False
    signs = Counter(d["isdiffpos"] for d in rows.detections)
    assert signs[1] > 0 and signs[-1] > 0


def test_isdiffpos_mapping() -> None:
    assert [isdiffpos_sign(v) for v in ("t", "1", "f", "0")] == [1, 1, -1, -1]
    with pytest.raises(ValueError, match="isdiffpos"):
        isdiffpos_sign(None)


def test_object_row_aggregates_the_alert(packets: dict[str, dict[str, Any]]) -> None:
    rows = alert_to_rows(packets["ZTF17aaacxxf"])
    mjds = [d["mjd"] for d in rows.detections]
    obj = rows.object
    assert obj["ndet"] == 23
    assert (obj["firstmjd"], obj["lastmjd"]) == (min(mjds), max(mjds))
    assert obj["meanra"] == pytest.approx(sum(d["ra"] for d in rows.detections) / 23)
    assert obj["mjdstarthist"] == packets["ZTF17aaacxxf"]["candidate"]["jdstarthist"] - MJD_OFFSET


def test_rows_only_use_model_columns_and_fill_not_null(packets: dict[str, dict[str, Any]]) -> None:
    night = list(packets.values()) + list(synthetic_night(300, seed=3))
    for alert in night:
        rows = alert_to_rows(alert)
        for model, batch in (
            (Object, [rows.object]),
            (Detection, rows.detections),
            (NonDetection, rows.non_detections),
            (Dataquality, rows.dataquality),
        ):
            table = table_of(model)
            required = {n for n, c in table.columns.items() if not c.nullable}
            for row in batch:
                assert set(row) <= set(table.columns)
                assert all(row.get(n) is not None for n in required), (model, row)
                model(**row)  # every row builds an instance of its model


def test_real_packets_lie_within_the_synthetic_ranges(packets: dict[str, dict[str, Any]]) -> None:
    ranges = {**DQ_RANGES, **INT_RANGES}
    for alert in packets.values():
        entries = [alert["candidate"], *(e for e in alert["prv_candidates"] or () if e["candid"] is not None)]
        for entry in entries:
            for name, (low, high) in ranges.items():
                if entry.get(name) is not None:
                    assert low <= entry[name] <= high, (name, entry[name])


def _rows(alerts: list[dict[str, Any]]) -> list[Any]:
    return [alert_to_rows(a) for a in alerts]


def test_synthetic_night_is_deterministic_and_a_stream() -> None:
    first = list(synthetic_night(600, seed=11))
    again = list(synthetic_night(600, seed=11))
    assert first == again
    longer = list(synthetic_night(900, seed=11))
    assert longer[:600] == first  # a longer night only adds alerts
    other = list(synthetic_night(600, seed=12))
    assert {a["objectId"] for a in other}.isdisjoint({a["objectId"] for a in first})


def test_synthetic_night_revisits_objects_and_redelivers_rows() -> None:
    alerts = list(synthetic_night(3000, seed=5))
    visits = Counter(a["objectId"] for a in alerts)
    assert max(visits.values()) >= 3 and sum(1 for v in visits.values() if v > 1) > len(visits) // 4
    rows = _rows(alerts)
    detections = [(d["candid"], d["oid"]) for r in rows for d in r.detections]
    non_detections = [(n["oid"], n["fid"], n["mjd"]) for r in rows for n in r.non_detections]
    assert len(set(detections)) < len(detections)  # re-delivered detections
    assert len(set(non_detections)) < len(non_detections)  # re-delivered non-detections
    # An alert's earlier candidate comes back, identical where it matters, in a later alert of the same
    # object.
    seen: dict[int, dict[str, Any]] = {}
    redelivered = 0
    for r in rows:
        for d in r.detections:
            if d["candid"] in seen:
                redelivered += 1
                prev = seen[d["candid"]]
                assert {k: d[k] for k in ("oid", "mjd", "ra", "dec", "magpsf", "fid", "isdiffpos")} == {
                    k: prev[k] for k in ("oid", "mjd", "ra", "dec", "magpsf", "fid", "isdiffpos")
                }
            else:
                seen[d["candid"]] = d
    assert redelivered > 0


def test_synthetic_values_look_like_ztf() -> None:
    alerts = list(synthetic_night(1000, seed=2))
    candids = [a["candid"] for a in alerts]
    assert len(set(candids)) == len(candids) and min(candids) > SYNTHETIC_CANDID_BASE
    for alert in itertools.islice(alerts, 200):
        cand = alert["candidate"]
        assert alert["objectId"].startswith("ZTF23") and len(alert["objectId"]) == 12
        assert 0 <= cand["ra"] < 360 and -31.5 < cand["dec"] <= 90
        assert 13 <= cand["magpsf"] <= 21.5 and 0 < cand["sigmapsf"] <= 0.35
        assert cand["fid"] in (1, 2) and cand["isdiffpos"] in ("t", "f")
        assert all(e["jd"] < cand["jd"] and e["jd"] > cand["jd"] - 30 for e in alert["prv_candidates"])
        assert cand["ndethist"] >= sum(1 for e in alert["prv_candidates"] if e["candid"] is not None) + 1
