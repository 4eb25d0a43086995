"""Every quality metric's default threshold lets the sample data through the gate."""

import re

import pytest
from conftest import bake, make


@pytest.mark.parametrize("metric", ["auc", "accuracy", "f1"])
def test_the_default_threshold_of_each_metric_passes_on_the_sample_data(metric, tmp_path):
    project = bake(tmp_path, quality_metric=metric)
    result = make("local-pipeline", project)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert re.search(rf"^Quality gate passed: {metric} ", result.stdout, re.M), result.stdout
