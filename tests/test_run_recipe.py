"""A deployment's ``recipe`` run-config key: a TOML file on the active party's host under the run config's pairs."""

import pytest
from conftest import run_cli

from apfed.errors import ConfigError

pytest.importorskip("flwr")  # the ServerApp's module builds its Flower app on import
from clients.flower_app import RunSettings  # noqa: E402
from clients.run_recipe import app_defaults  # noqa: E402


def _run_config(**pairs) -> dict:
    """A run config as Flower hands it to the ServerApp: the app's declared defaults with ``pairs`` over them."""
    rc = {k.replace("_", "-"): v for k, v in app_defaults().items()}
    rc.update({k.replace("_", "-"): v for k, v in pairs.items()})
    return rc


def test_the_app_declares_every_run_setting_and_the_recipe_key():
    simulation_only = {"passive_views", "overlap", "labelled", "simulation", "recipe_note"}
    assert set(app_defaults()) == set(RunSettings.__dataclass_fields__) - simulation_only
    assert app_defaults()["recipe"] == ""


def test_a_recipe_gives_what_the_run_config_leaves_at_the_default_and_its_set_pairs_go_first(tmp_path):
    recipe = tmp_path / "churn.toml"
    recipe.write_text(
        'method = "apfed-kd"\nseed = 3\nepochs = 30\ntest-fraction = 0.25\ndata = ["bank.csv", "shop.csv"]\n'
        'pipeline = false\nactive = 1\n\n[set]\nlr = 0.003\nkd_temperature = 2.0\npassive_losses = "r,c"\n'
    )
    s = RunSettings.from_run_config(_run_config(recipe=str(recipe), epochs=5, sets="lr=0.01"))
    assert (s.method, s.seed, s.test_fraction, s.pipeline) == ("apfed-kd", 3, 0.25, False)
    assert s.data == ["bank.csv", "shop.csv"] and s.active == "1"  # a view index, as active=1 in the run config
    assert s.epochs == 5  # the run config's own value wins
    assert s.sets == ["lr=0.003", "kd_temperature=2", "passive_losses=r,c", "lr=0.01"]
    cfg = s.config()
    assert (cfg.method, cfg.seed, cfg.epochs, cfg.lr, cfg.kd_temperature) == ("apfed-kd", 3, 5, 0.01, 2.0)
    assert cfg.passive_losses == "r,c"
    assert s.recipe == str(recipe)
    assert s.recipe_note.startswith(f"recipe {recipe}: method='apfed-kd'; seed=3; test-fraction=0.25;")
    assert "set lr=0.003, kd_temperature=2, passive_losses=r,c" in s.recipe_note
    assert s.recipe_note.endswith("the run config's own epochs=5 (the file's 30)")
    # a run config that gives a key its app default cannot be told from one that does not: the file's value holds
    assert RunSettings.from_run_config(_run_config(recipe=str(recipe), method="apfed-c")).method == "apfed-kd"
    # no recipe: nothing read, nothing noted
    plain = RunSettings.from_run_config(_run_config(method="apfed-r"))
    assert (plain.method, plain.recipe, plain.recipe_note) == ("apfed-r", "", "")


def test_info_recipe_of_a_model_is_a_deployment_recipe_for_the_same_training_settings(tmp_path, party_csvs):
    from apfed.config import TrainConfig
    from apfed.standalone import StandaloneModel

    a, b, c = party_csvs["paths"]
    model = tmp_path / "m.safetensors"
    code, _, err = run_cli(
        "train", "--data", a, "--data", b, "--data", c, "--id-column", "user_id", "--method", "apfed-kd",
        "--seed", "4", "--epochs", "2", "--set", "kd_temperature=3", "--set", "lr=0.00123456789", "--out", model,
    )  # fmt: skip
    assert code == 0, err
    code, recipe, err = run_cli("info", "--model", model, "--recipe")
    assert code == 0, err
    (tmp_path / "m.toml").write_text(recipe)
    s = RunSettings.from_run_config(_run_config(recipe=str(tmp_path / "m.toml"), data=str(a), passives=2))
    deployed = s.config().to_dict()
    trained = TrainConfig.from_dict(StandaloneModel.load(model).config).to_dict()
    speed = ("batches_per_round", "pipeline", "device")  # the deployment's own choices (K = 16, pipelined)
    assert {k: v for k, v in deployed.items() if k not in speed} == {k: v for k, v in trained.items() if k not in speed}


@pytest.mark.parametrize(
    "text, message",
    [
        ("epoch = 3\n", "'epoch' is not a run-config key; did you mean 'epochs'?"),
        ('epochs = "3"\n', "'epochs' takes a whole number, got '3'"),
        ("pipeline = 1\n", "'pipeline' takes true or false, got 1"),
        ("test-fraction = true\n", "'test-fraction' takes a number, got True"),
        ("data = [1, 2]\n", "'data' takes a list of strings or a string, got [1, 2]"),
        ("method = ['apfed-c']\n", "'method' takes a string, got ['apfed-c']"),
        ("active = true\n", "'active' takes a string, got True"),
        ("epochs = 3\nepochs-x = 1\n", "'epochs-x' is not a run-config key; did you mean 'epochs'?"),
        ("epochs = 3\n'epochs' = 4\n", "not valid TOML"),
        ("seed = 1\nseed_ = 2\n", "'seed_' is not a run-config key; did you mean 'seed'?"),
        ("batches-per-round = 2\nbatches_per_round = 2\n", "'batches_per_round' sets batches-per-round a second time"),
        ("recipe = 'other.toml'\n", "'recipe': a recipe cannot name another recipe"),
        ("set = 3\n", "'set' takes a table of settings ([set] lr = 0.003) or a string"),
        ("sets = 'lr=0.1'\n[set]\nlr = 0.2\n", "'set' and 'sets' both give training settings; keep one"),
        ("[set]\nlrr = 0.1\n", "[set] lrr=0.1: no training setting 'lrr'; did you mean lr?"),
        ("[set]\nlr = 'fast'\n", "[set] lr: 'fast' is not a valid float"),
        ("[set]\nlr = [0.1]\n", "each [set] value must be a string, a number or a boolean"),
        ("method = \n", "not valid TOML"),
    ],
)
def test_a_bad_recipe_is_one_line_naming_the_file_and_the_key(tmp_path, text, message):
    recipe = tmp_path / "bad.toml"
    recipe.write_text(text)
    with pytest.raises(ConfigError) as e:
        RunSettings.from_run_config(_run_config(recipe=str(recipe)))
    assert str(e.value).startswith(f"{recipe}: ") and message in str(e.value) and "\n" not in str(e.value)


def test_a_recipe_that_is_not_a_readable_file_is_one_line(tmp_path):
    for path, message in [
        (tmp_path / "none.toml", f"{tmp_path / 'none.toml'}: no such recipe file"),
        (tmp_path, f"{tmp_path} is a directory; the run config's recipe takes a TOML file"),
    ]:
        with pytest.raises(ConfigError, match="^" + message.replace("'", ".") + "$"):
            RunSettings.from_run_config(_run_config(recipe=str(path)))
    (tmp_path / "latin1.toml").write_bytes("method = 'caf\xe9'\n".encode("latin-1"))
    with pytest.raises(ConfigError, match="not valid TOML: not UTF-8 text"):
        RunSettings.from_run_config(_run_config(recipe=str(tmp_path / "latin1.toml")))


def test_preflight_reads_a_recipe_as_the_serverapp_will_and_checks_its_training_settings(tmp_path):
    recipe = tmp_path / "churn.toml"
    recipe.write_text('method = "apfed-kd"\nseed = 3\n\n[set]\nkd_temperature = 2.0\n')
    code, out, err = run_cli("preflight", "--recipe", recipe)
    assert code == 0, err
    assert out.splitlines() == [
        f"recipe {recipe}: method='apfed-kd'; seed=3; set kd_temperature=2 (a valid training recipe)",
        "preflight: all 1 checked are usable",
    ]
    for text, message in [
        ('method = "apfed-x"\n', "unknown method 'apfed-x'"),
        ("[set]\nlr = -1\n", "lr must be a positive number, got -1.0"),
        ("epoch = 3\n", "'epoch' is not a run-config key; did you mean 'epochs'?"),
    ]:
        recipe.write_text(text)
        code, out, err = run_cli("preflight", "--recipe", recipe)
        assert code == 2 and out == "" and err.startswith(f"error: {recipe}: ") and message in err, err
        assert len(err.strip().splitlines()) == 1
