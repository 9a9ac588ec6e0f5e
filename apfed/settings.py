"""Every training setting (a ``TrainConfig`` field), explained: what ``apfed settings`` prints, and the tables of
docs/settings.md (``apfed settings --markdown`` writes them; tests/test_docs.py checks the file holds them)."""

from __future__ import annotations

from dataclasses import fields

from apfed.config import PRESETS, TrainConfig, make_config

GROUPS: tuple[tuple[str, str, tuple[tuple[str, str], ...]], ...] = (
    (
        "Recipe",
        "",
        (
            (
                "method",
                "`local`, `apfed-r`, `apfed-c`, `apfed-m`, `apfed-kd`, `tvfl` or `centralized` (the commands take "
                "`--method` / `--methods`)",
            ),
            ("epochs", "passes over the training rows"),
            ("batch_size", "rows per minibatch"),
            ("optimizer", "`sgd`, `adam` or `adamw` (torch.optim's update rules, `apfed/optim.py`)"),
            ("lr", "learning rate (the peak of the cosine schedule)"),
            ("momentum", "SGD momentum"),
            ("weight_decay", "L2 (sgd, adam) or decoupled (adamw) weight decay"),
            ("schedule", "learning rate over the run: `constant` or `cosine` decay to 0"),
            ("seed", "every random choice of the run: initial weights, minibatch order, validation rows, augmentation"),
            ("device", "`cpu` or `cuda` (`cuda:N`)"),
        ),
    ),
    (
        "APFed",
        "",
        (
            ("lam", "λ, the weight of the passives' gradients on the active encoder (0: no help from the passives)"),
            ("temperature", "NT-Xent temperature (APFed-C)"),
            (
                "passive_losses",
                "apfed-m and apfed-kd: `r` or `c` per passive, in order, e.g. `r,c` (apfed-m alternates r, c; "
                "apfed-kd uses c)",
            ),
            ("kd_temperature", "apfed-kd: temperature of the teacher's soft labels"),
            ("kd_weight", "apfed-kd: weight of the distillation loss"),
            ("feature_weight", "apfed-kd: weight of a loss pulling the student's hidden layer onto the teacher's"),
            ("teacher_grad", "apfed-kd: the teacher's loss also trains the shared active encoder"),
            (
                "kd_student",
                "apfed-kd: `joint` (the student trains beside the teacher, sharing its encoder) or `fresh` (after the"
                " teacher's epochs, a new standalone network trains as many more on the labels and the teacher's soft"
                " labels of the training rows, fetched once; the passives then only wait for the end)",
            ),
        ),
    ),
    (
        "Networks",
        "The image views use the reference networks (REFERENCE.md); these sizes shape the tabular encoders and the "
        "heads.",
        (
            ("embedding_dim", "width of a tabular encoder's output, the embedding"),
            ("hidden_dim", "hidden width of tabular encoders and of APFed-R's decoders"),
            ("head_hidden", "hidden width of the classification heads"),
            ("dropout", "dropout in the heads, in [0, 1)"),
            ("projection_dim", "width of APFed-C's projection heads (what the active party sends)"),
        ),
    ),
    (
        "Data and augmentation",
        "",
        (
            (
                "class_weight",
                "`balanced`: each class's loss weighted by N / (classes × its training rows), for imbalanced labels",
            ),
            (
                "huber",
                "a regression: > 0, the task losses are the Huber loss with this threshold, in standard deviations of "
                "the target (squared below it, linear above: outliers weigh less); 0: the squared error",
            ),
            (
                "target_transform",
                "a regression: `log` trains on log(1 + y) (for a skewed target: amounts, counts, durations; every "
                "label above -1), the model predicting back in y's units; `none`",
            ),
            (
                "unmatched_rows",
                "the active party's labelled rows that some passive lacks: `train` (the standalone methods' task "
                "loss takes them, in local steps) or `drop`",
            ),
            (
                "unlabelled_rows",
                "the rows every party holds that have no label (an empty label cell): `train` (apfed-r, -c, -m and -kd "
                "train the passives' losses on them, and apfed-kd its distillation; the task loss skips them) or "
                "`drop`; local, tvfl and centralized leave them out",
            ),
            ("mixup", "> 0: mixup with Beta(a, a) weights, the same mix at every party (0: off)"),
            ("shift", "image views: a random horizontal shift of up to N pixels, the same at every party"),
        ),
    ),
    (
        "Validation and early stopping",
        "",
        (
            (
                "validation",
                "> 0 (below 0.5): this share of the training rows (stratified, seeded) trains nothing and picks the "
                "standalone model's epoch (and, in evaluate, the method or variant to quote); with a partial overlap "
                "the standalone methods also draw them from the rows that some passive lacks",
            ),
            (
                "validation_metric",
                "what picks the epoch: `accuracy`, `loss` or `roc_auc` (the better choice for a rare class); for a"
                " regression `r2` (what `accuracy` stands for there) or `loss` (the mean squared error)",
            ),
            (
                "validation_split",
                "`random` (stratified, seeded) or `latest` (needs `validation` and a time column, `--time-column`):"
                " the validation rows are the latest training rows by time, the period just before the test rows,"
                " so the epoch kept is the one that does best on the most recent rows",
            ),
            ("patience", "> 0 (needs `validation`): stop after this many epochs without a better validation figure"),
            (
                "calibrate",
                "true (needs `validation`): after training, temperature scaling on the validation rows: the one T that "
                "makes the standalone model's probabilities there most likely (within 0.05-20), folded into its last "
                "layer (logits / T); its predicted classes are unchanged, its probabilities calibrated (for cut-offs, "
                "risk scores)",
            ),
            (
                "conformal",
                "> 0, below 1 (needs `validation`): split conformal prediction on half the validation rows, kept apart"
                " (they pick no epoch): each prediction also gets an interval (a regression) or a set of classes that"
                " holds the truth for at least this share of new rows, e.g. 0.9 (`predict`'s lower/upper or"
                " prediction_set columns)",
            ),
            (
                "profile",
                "true: the model file keeps, for `apfed drift`, a profile of its training rows (tabular models: each"
                " numeric column's deciles and the share of rows between them, each category's share, the shares"
                " missing) and of its outputs on the test rows (else the validation rows): each predicted class's"
                " share and the score's deciles, or the predicted values'; false leaves both out (the file then"
                " tells of those rows only each feature's mean and standard deviation)",
            ),
            (
                "eval_last",
                "`evaluate`'s accuracy column (a regression's R²): the mean test figure over the last N epochs, the"
                " reference's figure",
            ),
        ),
    ),
    (
        "Protocol and wire",
        "",
        (
            (
                "batches_per_round",
                "K, minibatches carried by one exchange with the passives (`--k`); K = 1 is the reference algorithm, "
                "deployments default to 16",
            ),
            (
                "pipeline",
                "queue round r + 1 before applying round r (the parties compute at the same time; the embeddings are "
                "one round stale)",
            ),
            ("payload", "dtype of embeddings and gradients on the wire: `float32` or `float16` (half the bytes)"),
            ("dp_clip", "> 0: clip each sample's sent embedding to this L2 norm (gradients to `dp_clip / batch_size`)"),
            ("dp_noise", "Gaussian noise std as a multiple of the clip bound (needs `dp_clip`)"),
        ),
    ),
    (
        "GPU",
        "",
        (
            ("cuda_graphs", "on a GPU, replay each role's training step as a CUDA graph"),
            ("tf32", "on a GPU, TF32 matrix multiplies (faster; about 10-bit mantissa products)"),
            (
                "deterministic",
                "on a GPU, deterministic kernels only (cuDNN's and cuBLAS's), so that the same seed gives the same"
                " model bit for bit, as it does on the CPU; slower",
            ),
        ),
    ),
)


def value_text(value: object) -> str:
    """A setting's value as ``--set`` takes it (an empty string shown as ``""``)."""
    return '""' if value == "" else str(value)


def preset_names() -> list[str]:
    """The presets, ``default`` first."""
    return sorted(PRESETS, key=lambda name: name != "default")


def rows() -> list[tuple[str, str, list[tuple[str, list[str], str]]]]:
    """(group title, its note, [(key, the value in each preset, what it does)]) for every setting, in order."""
    presets = {name: make_config(name) for name in preset_names()}
    return [
        (title, note, [(k, [value_text(getattr(c, k)) for c in presets.values()], what) for k, what in entries])
        for title, note, entries in GROUPS
    ]


def markdown() -> str:
    """The settings as markdown tables, one per group, with a column per preset."""
    out = []
    for title, note, entries in rows():
        out += [f"## {title}", ""] + ([note, ""] if note else [])
        out.append("| key | " + " | ".join(preset_names()) + " | what it does |")
        out.append("|---" * (len(preset_names()) + 2) + "|")
        out += [f"| `{k}` | " + " | ".join(f"`{v}`" for v in values) + f" | {what} |" for k, values, what in entries]
        out.append("")
    return "\n".join(out)


def undocumented() -> list[str]:
    """TrainConfig fields that no group explains (none, as tests/test_docs.py checks)."""
    listed = {k for _, _, entries in GROUPS for k, _ in entries}
    return [f.name for f in fields(TrainConfig) if f.name not in listed]
