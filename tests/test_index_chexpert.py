"""libxr.index.chexpert: the label hierarchy."""

import pytest

from libxr.index.chexpert import OBSERVATIONS, PARENTS, ancestors, propagate


def test_hierarchy_is_report_003s():
    assert ancestors("Pneumonia") == ["Consolidation", "Lung Opacity"]
    assert ancestors("Cardiomegaly") == ["Enlarged Cardiomediastinum"]
    assert ancestors("Fracture") == []
    assert set(PARENTS) | set(PARENTS.values()) <= set(OBSERVATIONS)


@pytest.mark.parametrize("labels, expected", [
    pytest.param({"Pneumonia": 1}, {"Pneumonia": 1, "Consolidation": 1, "Lung Opacity": 1},
                 id="positive-lifts-every-ancestor"),
    pytest.param({"Pneumonia": -1, "Lung Opacity": 0},
                 {"Pneumonia": -1, "Consolidation": -1, "Lung Opacity": -1},
                 id="uncertain-beats-negative-parent"),
    pytest.param({"Edema": -1, "Lung Opacity": 1}, {"Edema": -1, "Lung Opacity": 1},
                 id="uncertain-leaves-positive-parent"),
    pytest.param({"Cardiomegaly": 0}, {"Cardiomegaly": 0}, id="negative-child-lifts-nothing"),
    pytest.param({"Cardiomegaly": 1, "Enlarged Cardiomediastinum": 0},
                 {"Cardiomegaly": 1, "Enlarged Cardiomediastinum": 1}, id="positive-beats-negative-parent"),
])
def test_propagate(labels, expected):
    assert propagate(dict(labels)) == expected
