"""``--config FILE``: a command's options in a TOML file, read before the command line's, which win."""

import json
import shlex

import numpy as np
import pytest
from conftest import run_cli


def _toml(path, text):
    path.write_text(text)
    return path


def test_a_config_file_trains_the_model_its_options_train_on_the_command_line(tmp_path, party_csvs):
    """The file's options (a list of data files, both spellings of a key, a flag, a [set] table) train the model
    the same options give on the command line, bit for bit; an option on the command line wins over the file's, and
    its --set pairs add to the file's."""
    import apfed
    from apfed.standalone import StandaloneModel

    a, b, c = party_csvs["paths"]
    config = _toml(
        tmp_path / "recipe.toml",
        f"""# the bank's recipe
data = ["{a}", "{b}", "{c}"]
id-column = "user_id"
method = "apfed-c"
epochs = 5
lam = 2
k = 2
pipeline = true

[set]
temperature = 0.5
hidden_dim = 16
""",
    )
    code, _, err = run_cli(  # --set adds to the file's [set] table, and wins for the same key
        "train", "--config", config, "--epochs", "2", "--set", "hidden_dim=32", "--out", tmp_path / "file.safetensors"
    )
    assert code == 0, err
    code, _, err = run_cli(
        "train", "--data", a, "--data", b, "--data", c, "--id-column", "user_id", "--method", "apfed-c",
        "--epochs", "2", "--lam", "2", "--k", "2", "--pipeline", "--set", "temperature=0.5", "--set", "hidden_dim=32",
        "--out", tmp_path / "line.safetensors",
    )  # fmt: skip
    assert code == 0, err
    from_file, from_line = (StandaloneModel.load(tmp_path / f"{n}.safetensors") for n in ("file", "line"))
    cfg = from_file.config
    assert (cfg["epochs"], cfg["lam"], cfg["temperature"], cfg["hidden_dim"]) == (2, 2.0, 0.5, 32)
    assert (cfg["batches_per_round"], cfg["pipeline"]) == (2, True)
    assert cfg == from_line.config
    ds, _ = apfed.load_dataset(data=[a, b, c], id_column="user_id", log=lambda _: None)
    X = ds.views[0].X
    np.testing.assert_array_equal(from_file.predict_proba(X), from_line.predict_proba(X))


def test_a_comparison_from_a_config_file_records_a_command_that_runs_without_it(tmp_path, party_csvs):
    """results.json's command writes out what the file gave, so the report reproduces once the file is gone."""
    a, b, _ = party_csvs["paths"]
    config = _toml(
        tmp_path / "cmp.toml",
        f'data = ["{a}", "{b}"]\nid_column = "user_id"\nmethods = ["local", "apfed-c"]\n'
        "seeds = 1\nepochs = 1\njobs = 1\n",
    )
    code, _, err = run_cli("evaluate", "--config", config, "--out", tmp_path / "first")
    assert code == 0, err
    first = json.loads((tmp_path / "first" / "results.json").read_text())
    command = shlex.split(first["command"])
    assert command[:2] == ["apfed", "evaluate"] and "--config" not in command
    assert command[command.index("--methods") + 1] == "local,apfed-c"  # a TOML list, comma-separated
    assert sorted(first["summary"]) == ["apfed-c", "local"]
    config.unlink()
    at = command.index("--out")
    code, _, err = run_cli(*command[1:at], *command[at + 2 :], "--out", tmp_path / "again")
    assert code == 0, err
    again = json.loads((tmp_path / "again" / "results.json").read_text())
    figures = ("accuracy_mean", "macro_f1_mean", "roc_auc_mean")  # not the seconds an epoch took
    assert {m: [v[f] for f in figures] for m, v in again["summary"].items()} == {
        m: [v[f] for f in figures] for m, v in first["summary"].items()
    }
    assert [r["accuracy"] for r in again["runs"]] == [r["accuracy"] for r in first["runs"]]


@pytest.mark.parametrize(
    "text, match",
    [
        ("epoch = 3", r"'epoch' is not an option of apfed train; did you mean 'epochs'\?"),
        ("color = 3", r"'color' is not an option of apfed train \(see 'apfed train --help'\)"),
        ('epochs = "ten"', r"'epochs': 'ten' is not a valid integer"),
        ("k = 0", r"'k': 0 is not in the range"),
        ("epochs = 3\nepochs", r"not valid TOML: .*line 2"),
        ('pipeline = "yes"', r"'pipeline' is a flag: true or false, got 'yes'"),
        ("lr = [1, 2]", r"'lr' takes one value, not a list"),
        ("data = [['a.csv']]", r"'data': each value must be a string or a number"),
        ("batch-size = 64\nbatch_size = 32", r"'batch_size' sets --batch-size a second time"),
        ('config = "other.toml"', r"'config' is not an option"),
    ],
)
def test_a_bad_config_file_is_one_line_naming_the_file_and_the_key(tmp_path, text, match):
    import re

    config = _toml(tmp_path / "bad.toml", text + "\n")
    code, out, err = run_cli("train", "--config", config, "--out", tmp_path / "m.safetensors")
    assert code == 2 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {config}: "), err
    assert re.search(match, lines[0]), lines[0]
    assert not (tmp_path / "m.safetensors").exists()


def test_a_missing_or_unreadable_config_file_is_one_line(tmp_path):
    binary = tmp_path / "binary.toml"
    binary.write_bytes(b"\xff\xfe\x00")
    for path, match in [
        (tmp_path / "none.toml", "no such config file"),
        (tmp_path, "is a directory; --config takes a TOML file"),
        (binary, "not valid TOML: not UTF-8 text"),
    ]:
        code, _, err = run_cli("evaluate", "--config", path, "--out", tmp_path / "out")
        assert code == 2 and err.strip().count("\n") == 0 and match in err, err


def test_the_documented_config_file_is_one_apfed_train_reads(tmp_path):
    """docs/commands.md's example file: every key an option of apfed train, every value of its type."""
    import re
    from pathlib import Path

    import click
    import typer

    from apfed.cli import app
    from apfed.cli.config_file import read_config

    text = (Path(__file__).parents[1] / "docs" / "commands.md").read_text()
    blocks = re.findall(r"```toml\n(.*?)```", text, re.S)
    assert blocks
    command = typer.main.get_command(app).commands["train"]
    for block in blocks:
        values = read_config(click.Context(command), _toml(tmp_path / "doc.toml", block))
        assert values["data"] == ("bank.csv", "shop.csv") and values["set_"] == ("validation=0.1", "calibrate=true")
        assert values["pipeline"] is True and values["lam"] == 2.0


def test_info_writes_a_models_recipe_that_trains_the_same_model_again(tmp_path, party_csvs):
    """``apfed info --recipe``: a TOML file of the model's method, preset, seed, epochs and the settings that differ
    from the preset; ``train --config`` with it and the same data makes the same model, bit for bit."""
    import apfed
    from apfed.standalone import StandaloneModel

    a, b, c = party_csvs["paths"]
    data = ["--data", a, "--data", b, "--data", c, "--id-column", "user_id"]
    first = tmp_path / "first.safetensors"
    code, _, err = run_cli(
        "train", *data, "--method", "apfed-c[lam=2]", "--seed", "3", "--epochs", "2", "--set", "validation=0.2",
        "--set", "passive_losses=c,c", "--test-fraction", "0", "--out", first,
    )  # fmt: skip
    assert code == 0, err
    code, recipe, err = run_cli("info", "--model", first, "--recipe")
    assert code == 0, err
    assert '\nmethod = "apfed-c"\npreset = "default"\nseed = 3\nepochs = 2\ntest-fraction = 0.0\n' in recipe
    assert "\n[set]\nlam = 2.0\n" in recipe and 'passive_losses = "c,c"' in recipe
    config = _toml(tmp_path / "recipe.toml", recipe)
    again = tmp_path / "again.safetensors"
    code, _, err = run_cli("train", "--config", config, *data, "--out", again)
    assert code == 0, err
    m1, m2 = StandaloneModel.load(first), StandaloneModel.load(again)
    assert m1.config == m2.config and m2.provenance["test_rows"] == 0
    ds, _ = apfed.load_dataset(data=[a, b, c], id_column="user_id", log=lambda _: None)
    X = ds.views[0].X
    np.testing.assert_array_equal(m1.predict_proba(X), m2.predict_proba(X))
    code, out, err = run_cli("info", "--model", first, "--recipe", "--json")
    assert code == 2 and err.strip() == "error: --json and --recipe print different things: give one"


def test_a_set_tables_values_keep_every_digit(tmp_path):
    """[set] values become --set pairs with every digit of a float (a recipe retrains the same model)."""
    import click
    import typer

    from apfed.cli import app
    from apfed.cli.config_file import read_config
    from apfed.config import parse_overrides

    command = typer.main.get_command(app).commands["train"]
    text = "[set]\nlr = 0.00012345678\nlam = 2.0\ncalibrate = true\npassive_losses = 'r,c'\n"
    values = read_config(click.Context(command), _toml(tmp_path / "set.toml", text))
    assert values["set_"] == ("lr=0.00012345678", "lam=2", "calibrate=true", "passive_losses=r,c")
    assert parse_overrides(list(values["set_"]))["lr"] == 0.00012345678


def test_evaluate_writes_the_recipe_its_validation_rows_picked_and_train_reads_it(tmp_path, party_csvs):
    """With validation rows, ``evaluate --out DIR`` writes ``DIR/recipe.toml``, the picked variant's recipe; ``train
    --config`` with it trains that variant with the comparison's settings. With no pick, no file."""
    import tomllib

    from apfed.config import TrainConfig, variant_config
    from apfed.standalone import StandaloneModel

    a, b, c = party_csvs["paths"]
    data = ["--data", a, "--data", b, "--data", c, "--id-column", "user_id"]
    out = tmp_path / "cmp"
    code, _, err = run_cli(
        "evaluate", *data, "--methods", "apfed-c[lam=0.5|2]", "--seeds", "1", "--epochs", "2",
        "--set", "validation=0.2", "--set", "hidden_dim=48", "--out", out,
    )  # fmt: skip
    assert code == 0, err
    report = json.loads((out / "results.json").read_text())
    pick = report["validation_pick"]
    assert pick in ("apfed-c[lam=0.5]", "apfed-c[lam=2]")
    text = (out / "recipe.toml").read_text()
    assert f"validation rows picked on bank+shop+telco: {pick}\n" in text and "recipe.toml" in err.replace("\n", "")
    assert "--run-config \"recipe='/abs/THIS.toml'" in text  # how a deployment takes it
    recipe = tomllib.loads(text)
    assert (recipe["method"], recipe["seed"], recipe["epochs"]) == ("apfed-c", 0, 2)
    assert recipe["set"] == {"lam": float(pick[len("apfed-c[lam=") : -1]), "validation": 0.2, "hidden_dim": 48}
    model = tmp_path / "m.safetensors"
    code, _, err = run_cli("train", "--config", out / "recipe.toml", *data, "--out", model)
    assert code == 0, err
    want = variant_config(TrainConfig.from_dict(report["config"]), pick, seed=0).to_dict()
    assert StandaloneModel.load(model).config == want
    plain = tmp_path / "plain"
    code, _, err = run_cli(
        "evaluate", *data, "--methods", "local,apfed-c", "--seeds", "1", "--epochs", "1", "--out", plain
    )
    assert code == 0, err
    assert not (plain / "recipe.toml").exists()  # no validation rows: nothing was picked


def test_a_recipe_of_a_method_with_no_passive_names_no_deployment():
    from apfed.config import make_config
    from apfed.recipe_file import recipe_toml

    local = recipe_toml(make_config("default", method="local", epochs=3).to_dict(), ["# a comment"])
    assert local.startswith("# a comment\n# apfed train --config THIS.toml") and "flwr run" not in local
    assert 'method = "local"\npreset = "default"\nseed = 0\nepochs = 3\n' in local and "[set]" not in local
    kd = recipe_toml(make_config("default", method="apfed-kd", epochs=3, lam=2.0).to_dict(), [])
    assert "flwr run . LINK" in kd and kd.endswith("\n[set]\nlam = 2.0\n")
