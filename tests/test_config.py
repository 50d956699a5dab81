"""Budget presets and ``--set`` overrides."""

import pytest

from sim2real_bench.config import DATA_PRESETS, apply_overrides, check_budget, flatten, parse_overrides
from sim2real_bench.errors import ConfigError, UnknownNameError
from sim2real_bench.regression import RegressionConfig


def test_every_budget_has_data_sizes() -> None:
    assert set(DATA_PRESETS) == {"smoke", "quick", "paper"}
    assert DATA_PRESETS["smoke"].source_train < DATA_PRESETS["quick"].source_train < DATA_PRESETS["paper"].source_train


def test_unknown_budget_lists_the_budgets() -> None:
    with pytest.raises(UnknownNameError, match="smoke, quick, paper"):
        check_budget("fast")


def test_overrides_are_converted_to_the_field_type() -> None:
    config = RegressionConfig(model="m", epochs=1, batch_size=8, lr=1e-3)
    changed = apply_overrides(config, parse_overrides(["task.epochs=3", "task.lr=0.5", "task.equalize=true"])["task"], "task")
    assert (changed.epochs, changed.lr, changed.equalize) == (3, 0.5, True)


@pytest.mark.parametrize(("items", "message"), [
    (["epochs=3"], "expected SECTION.FIELD=VALUE"),
    (["task.epochs"], "expected SECTION.FIELD=VALUE"),
])
def test_malformed_override_is_a_clear_error(items, message) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_overrides(items)


def test_unknown_or_mistyped_field_is_a_clear_error() -> None:
    config = RegressionConfig(model="m", epochs=1, batch_size=8, lr=1e-3)
    with pytest.raises(ConfigError, match="no setting 'epoch'; settings: .*epochs"):
        apply_overrides(config, {"epoch": "2"}, "task")
    with pytest.raises(ConfigError, match="cannot read task.epochs='two' as int"):
        apply_overrides(config, {"epochs": "two"}, "task")


def test_flatten_joins_nested_keys() -> None:
    assert flatten({"a": {"b": 1, "c": {"d": 2}}, "e": 3}) == {"a.b": 1, "a.c.d": 2, "e": 3}
