"""A training recipe as a TOML file that ``apfed train --config`` and a deployment's ``recipe=`` read: the method,
the preset it differs least from, seed, epochs, the task and test fraction where they are not the defaults, and a
``[set]`` table of the settings that differ from that preset. ``apfed info --recipe`` writes a model's;
``apfed evaluate`` writes the one its validation rows picked."""

from __future__ import annotations

import json

from apfed.config import recipe_settings

TRAIN = "# apfed train --config THIS.toml --data ACTIVE.csv --data PASSIVE.csv ... --out MODEL.safetensors"
DEPLOY = "# or a deployment: flwr run . LINK --run-config \"recipe='/abs/THIS.toml' data='/abs/ACTIVE.csv' ...\""
ALONE = ("local", "centralized")  # methods with no passive party to deploy


def toml_value(value) -> str:
    """``value`` as a TOML value: a boolean, a number, or a basic string."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return json.dumps(str(value))  # a TOML basic string is a JSON string


def recipe_toml(config: dict, comments: list[str], options: dict | None = None) -> str:
    """The recipe of a run's stored ``config`` (``TrainConfig.to_dict()``) as TOML: ``comments`` first (each line
    starting with #), then how to use the file, the options (method, preset, seed, epochs, then ``options``: task,
    test-fraction, passives) and the ``[set]`` table."""
    preset, diffs = recipe_settings(config)
    head = {"method": config.get("method", "apfed-kd"), "preset": preset, "seed": config.get("seed", 0)}
    if config.get("epochs"):
        head["epochs"] = config["epochs"]
    use = [TRAIN] if head["method"] in ALONE else [TRAIN, DEPLOY]
    lines = [*comments, *use, *(f"{k} = {toml_value(v)}" for k, v in {**head, **(options or {})}.items())]
    if diffs:
        lines += ["", "[set]", *(f"{k} = {toml_value(v)}" for k, v in diffs.items())]
    return "\n".join(lines) + "\n"
