import pytest

from sihnet.bern import bern_score, category_of, score_fields

NORMAL = {
    "pachymeningeal_enhancement": "0",
    "venous_sinus_engorgement": "0",
    "subdural_fluid_collection": "0",
    "suprasellar_cistern_mm": "6.0",
    "prepontine_cistern_mm": "7.0",
    "mamillopontine_distance_mm": "9.0",
}


@pytest.mark.parametrize(
    ("field", "value", "points"),
    [
        ("pachymeningeal_enhancement", "1", 2),
        ("venous_sinus_engorgement", "1", 2),
        ("subdural_fluid_collection", "1", 1),
        ("suprasellar_cistern_mm", "3.9", 2),
        ("suprasellar_cistern_mm", "4.0", 2),
        ("suprasellar_cistern_mm", "4.1", 0),
        ("prepontine_cistern_mm", "4.9", 1),
        ("prepontine_cistern_mm", "5.0", 1),
        ("prepontine_cistern_mm", "5.1", 0),
        ("mamillopontine_distance_mm", "6.4", 1),
        ("mamillopontine_distance_mm", "6.5", 1),
        ("mamillopontine_distance_mm", "6.6", 0),
        ("pachymeningeal_enhancement", "0", 0),
    ],
)
def test_each_criterion_at_and_around_its_threshold(field: str, value: str, points: int) -> None:
    assert bern_score({**NORMAL, field: value}) == points


def test_all_criteria_sum_to_nine_and_categories() -> None:
    worst = {k: "1" for k in NORMAL} | {
        "suprasellar_cistern_mm": 0,
        "prepontine_cistern_mm": 0,
        "mamillopontine_distance_mm": 0,
    }
    assert bern_score(worst) == 9
    assert [category_of(s) for s in (0, 2, 3, 4, 5, 9)] == [
        "low",
        "low",
        "intermediate",
        "intermediate",
        "high",
        "high",
    ]


def test_a_missing_field_is_never_scored_as_absent() -> None:
    partial = score_fields({**NORMAL, "suprasellar_cistern_mm": ""})
    assert not partial.complete and partial.score is None
    assert (partial.score_min, partial.score_max) == (0, 2)
    assert partial.missing == ("suprasellar_cistern_mm",)
    assert partial.category == "low"
    spanning = score_fields(
        {**NORMAL, "pachymeningeal_enhancement": "1", "venous_sinus_engorgement": ""}
    )
    assert (spanning.score_min, spanning.score_max) == (2, 4)
    assert spanning.category == "low-intermediate"
    with pytest.raises(ValueError, match="missing"):
        bern_score({**NORMAL, "subdural_fluid_collection": None})


def test_the_six_item_names_are_written_in_one_module_only() -> None:
    """The Bern items live in ``sihnet.bern.ITEMS``; every consumer (manifest columns, scoring,
    heads, occlusion targets, synthetic reader) derives them from there."""
    import re
    from pathlib import Path

    import sihnet
    from sihnet.bern import FIELDS

    root = Path(sihnet.__file__).parent
    quoted = re.compile("|".join(rf"['\"]{name}['\"]" for name in FIELDS))
    holders = sorted(
        str(path.relative_to(root))
        for path in root.rglob("*")
        if path.suffix in (".py", ".j2") and quoted.search(path.read_text(encoding="utf-8"))
    )
    assert holders == ["bern.py"]


def test_scoring_follows_a_seventh_item_added_to_the_table(monkeypatch: pytest.MonkeyPatch) -> None:
    from sihnet import bern

    extra = bern.BernItem("tonsillar_descent_mm", "distance", 1, 5.0, (0.0, 30.0))
    items = (*bern.ITEMS, extra)
    monkeypatch.setattr(bern, "ITEMS", items)
    fields = {item.name: (1 if item.kind == "sign" else 9.0) for item in items}
    fields["tonsillar_descent_mm"] = 3.0
    assert bern.score_fields(fields).score == 2 + 2 + 1 + 1  # the signs and the new distance
    assert "tonsillar_descent_mm" in bern.score_fields({}).missing
    assert extra.meets(4.9) and not extra.meets(5.1)
