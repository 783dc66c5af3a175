"""Suite files: what a robustness suite runs, read from TOML and checked before any work starts.

A suite file names the data, the built-in models (and how to train the missing ones), the user's own
models under test (``[[targets]]`` tables: an ONNX file, a TensorRT plan or a PyTorch entry point, each with
an optional model card), the deployments (engines x precisions), the experiments with their parameters and
image counts, and the tolerances of the regression check. Every section is optional but a suite needs
``[models]`` or at least one ``[[targets]]`` table; an experiment whose section is absent is not run.
``[models] defended`` adds one built-in model trained with PGD adversarial training, a model of its own in the
records (:class:`DefendedSpec`): Table 1 runs on it, and ``[whitebox] defended_eps`` its accuracy over eps.

Each target joins every experiment section of the suite that applies to it (the sections' model lists choose
among the built-in models only): the clean evaluation on the deployment pairs its kind runs, Table 1 and the
sweep when it is a PyTorch model, [square] when its output has scores or [square] attack is the hard-label one
(class maps only), and [transfer] as a target (and as a source when it is a PyTorch model). An experiment section
that nothing can run is an error.

Contract of :func:`parse_suite`: it returns a fully validated :class:`SuiteConfig` or raises one HarnessError
(exit code 2) whose one-line message names the file and the key, e.g. ``suite.toml: [whitebox] n_images:
expected an integer >= 1, got 0`` or ``robustness.toml: [[targets]] #1 (unet) onnx: no such file ...``.
Target files are resolved against the suite file's folder, checked to exist, and cards are read and validated
here, before any work; whether a file and its card fit together is checked when the run opens the target.
"""

from __future__ import annotations

import argparse
import os
import re
import stat
from dataclasses import asdict, dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any

from engines.availability import DEVICES, ENGINES, PRECISIONS
from harness.attacks import attacks_from_names
from harness.attacks.blackbox_attacks import BLACKBOX_ATTACKS, SQUARE_ONLY_OPTIONS
from harness.attacks.oracle import ORACLES
from harness.attacks.square import COLOURS, INITS, MIN_EPS, P_SCHEDULES, STARTS
from harness.data import DATA_SOURCES, MASK_FORMATS
from harness.data.sizes import ImageSize, size_text
from harness.errors import HarnessError, error_line
from harness.fileio import parse_toml, read_text
from harness.limits import (
    MAX_BATCH,
    MAX_EPOCHS,
    MAX_IMAGE_SIZE,
    MAX_IMAGES,
    MAX_NAME,
    MAX_POINTS,
    MAX_QUERIES,
    MAX_SEED,
    MAX_STEPS,
    MAX_SWEEP_POINTS,
    MAX_SYNTHETIC_IMAGE_SIZE,
    MAX_THREADS,
    MIN_IMAGE_SIZE,
)
from harness.models import MODELS, SIZES
from harness.training import AdversarialTraining, parse_adversarial

MAX_SUITE_BYTES = 1 << 20  # a suite file is a short text; a larger one is not one (or never ends: /dev/zero)
SECTIONS = ("data", "models", "deployment", "whitebox", "sweep", "square", "transfer", "examples", "check")
TARGET_KEYS = ("onnx", "plan", "torch")  # exactly one per [[targets]] table: what the target is
MAX_TARGETS = 32  # [[targets]] tables of one suite
DEPLOYMENT_IMAGES = 16  # default images of the targets' clean evaluation on the deployment pairs
_TARGET_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*")  # part of figure file names (reports.run_dir._NAME)
_ENTRY = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*")
WHITEBOX_COLUMNS_HELP = "fgsm, mifgsm-N or pgd-N"
DEFENDED_COLUMNS = ("pgd-100", "sea")  # [whitebox] defended_columns' default: plain PGD beside the worst case
DEFENDED_EXAMPLE = '{ model = "fcn-resnet50", adversarial = "pgd-2", eps = 4, epochs = 10 }'


@dataclass(frozen=True)
class DefendedSpec:
    """``[models] defended``: one built-in ``model`` trained with PGD adversarial training (``steps``, ``eps`` on the
    0-255 scale; ``epochs``/``lr`` None: train's schedule). It is a model of its own in the records, named
    :attr:`name` (``fcn-resnet50-adv-pgd2-eps4``): derived from the model and its defence, so it never collides with
    the undefended model's records and stays the same from run to run."""

    model: str
    steps: int
    eps: float
    epochs: int | None = None
    lr: float | None = None

    @property
    def adversarial(self) -> AdversarialTraining:
        return AdversarialTraining(self.steps, self.eps)

    @property
    def name(self) -> str:
        return f"{self.model}-{self.adversarial.tag}"


@dataclass(frozen=True)
class DataSpec:
    source: str = "synthetic"
    root: str | None = None
    image_size: int | ImageSize | None = None  # None: the source's default (64 synthetic, 256 voc/folder)
    seed: int = 0
    mask_format: str = "index"  # how a folder's masks encode classes (harness.data.masks)


@dataclass(frozen=True)
class ModelsSpec:
    """``epochs``/``lr``: per model, only where the suite overrides train's DEFAULT_SCHEDULE."""

    names: tuple[str, ...] = ()  # empty: a suite of [[targets]] only, nothing is trained
    size: str = "reduced"
    epochs: dict[str, int] = field(default_factory=dict)
    lr: dict[str, float] = field(default_factory=dict)
    seed: int = 0
    batch_size: int = 16
    n_train: int | None = None  # None: the whole training split
    defended: DefendedSpec | None = None  # trained with the same seed, batch size and training images

    @property
    def all_names(self) -> tuple[str, ...]:
        """Every built-in model the suite loads: ``names``, then the defended model's record name."""
        return self.names + ((self.defended.name,) if self.defended is not None else ())


@dataclass(frozen=True)
class TargetSpec:
    """One ``[[targets]]`` table: a model the user deploys. ``kind`` is the key that named it (onnx, plan, torch);
    ``path`` the ONNX file or plan (absolute), ``entry`` the torch ``module:callable`` with its optional
    ``weights`` file; ``precision``: what a plan was built at (plans only: it is the records' precision);
    ``card`` the card file (absolute) or None, ``card_data`` its validated content (a
    harness.targets.card.ModelCard). ``index``: the table's position in the file (1-based), for messages;
    ``folder``: the suite file's folder, where relative names (and a torch entry's module) are looked up."""

    name: str
    kind: str
    index: int
    path: str | None = None
    entry: str | None = None
    weights: str | None = None
    precision: str | None = None
    card: str | None = None
    card_data: Any = None
    folder: str = "."

    @property
    def white_box(self) -> bool:
        """A PyTorch model with scores: white-box attacks and transfer crafting can use it."""
        return self.kind == "torch" and self.has_scores

    @property
    def has_scores(self) -> bool:
        """False for a class-map output (card output.kind = "class_map"): score-based attacks do not apply."""
        return self.card_data is None or self.card_data.has_scores

    @property
    def label(self) -> str:
        return f"[[targets]] #{self.index} ({self.name})"

    def as_dict(self) -> dict[str, Any]:
        """JSON-serialisable, the card as its ``as_dict()``."""
        doc = asdict(replace(self, card_data=None))
        doc["card_data"] = None if self.card_data is None else self.card_data.as_dict()
        return doc


@dataclass(frozen=True)
class DeploymentSpec:
    """Engines x precisions (torch runs fp32 only); the fp32 PyTorch model is always the reference.
    ``n_images``: the images of each target's clean evaluation on its deployment pairs (built-in models are
    evaluated on them by [transfer])."""

    engines: tuple[str, ...] = ("torch", "ort")
    precisions: tuple[str, ...] = ("fp32",)
    device: str | None = None  # None: each engine's default (cpu; cuda for trt)
    calibration_images: int = 64
    n_images: int = DEPLOYMENT_IMAGES

    def pairs(self) -> list[tuple[str, str]]:
        """Every (engine, precision) the engine can run, in file order: e.g. torch fp32, ort fp32, ort int8."""
        return [(e, p) for e in self.engines for p in self.precisions if p in PRECISIONS[e]]


@dataclass(frozen=True)
class WhiteboxSpec:
    """The paper's Table 1: ``columns`` like ``fgsm``, ``mifgsm-20``, ``pgd-100``; ``skip``: model -> columns
    left out (shown as "-"), as the paper leaves out PGD-200 for the ResNets. ``defended_eps``: radii at which
    ``defended_columns`` also run on the defended model (SEA-style accuracy over eps; empty: none)."""

    columns: tuple[str, ...]
    n_images: int = 16
    eps: float = 8.0
    seed: int = 0
    skip: dict[str, tuple[str, ...]] = field(default_factory=dict)
    defended_eps: tuple[float, ...] = ()
    defended_columns: tuple[str, ...] = DEFENDED_COLUMNS


@dataclass(frozen=True)
class SweepSpec:
    """The paper's Figure 3: PGD with α = ε / steps for each count of ``steps``."""

    models: tuple[str, ...]
    steps: tuple[int, ...] = (20, 40, 60, 80, 100)
    n_images: int = 16
    eps: float = 8.0
    seed: int = 0


@dataclass(frozen=True)
class SquareSpec:
    """The paper's Figure 4: a black-box attack through ``engine``/``precision``, once per init. ``attack``:
    ``square`` (the paper's Square Attack; ``p_init``, ``loss`` and ``p_schedule`` are its options) or
    ``hardlabel`` (class maps only: it also runs on targets without scores); ``colour``: of a square or a block
    (rgb, the paper's, or grey). The defaults are the paper's setting."""

    models: tuple[str, ...]
    engine: str = "ort"
    precision: str = "fp32"
    inits: tuple[str, ...] = INITS
    queries: int = 1000
    p_init: float = 0.05
    loss: str = "ce"
    eps: float = 8.0
    n_images: int = 8
    seed: int = 0
    attack: str = "square"
    p_schedule: str = "paper"
    colour: str = "rgb"

    @property
    def reads_scores(self) -> bool:
        """Whether the attack reads the engine's scores (a class-map target cannot be attacked by it)."""
        return self.attack == "square"


@dataclass(frozen=True)
class TransferSpec:
    """The paper's Table 2 and the deployment-gap table: ``attacks`` crafted on each source, evaluated
    on each target through every deployment."""

    sources: tuple[str, ...]
    targets: tuple[str, ...]
    attacks: tuple[str, ...] = ("mifgsm-20", "pgd-20")
    n_images: int = 16
    eps: float = 8.0
    seed: int = 0


@dataclass(frozen=True)
class ExamplesSpec:
    """The paper's Figures 1-2: the first ``n_images`` of a white-box column on one model."""

    model: str
    attack: str = "pgd-20"
    n_images: int = 4


@dataclass(frozen=True)
class CheckSpec:
    """Tolerances of ``python -m harness check``, in percentage points."""

    tolerance: float = 1.0
    attack_tolerance: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class SuiteConfig:
    """``batch_size``: images per attack batch and per engine call in every experiment (examples are reused
    only when it matches, as it changes the batches' seeds). ``threads``: PyTorch's intra-op threads (None:
    every core, or OMP_NUM_THREADS); float sums, hence trained weights, differ with the thread count, so a
    suite checked against a baseline pins it."""

    name: str
    source: str  # the file it was read from, or "built-in default"
    batch_size: int
    threads: int | None
    data: DataSpec
    models: ModelsSpec
    deployment: DeploymentSpec
    whitebox: WhiteboxSpec | None = None
    sweep: SweepSpec | None = None
    square: SquareSpec | None = None
    transfer: TransferSpec | None = None
    examples: ExamplesSpec | None = None
    check: CheckSpec = field(default_factory=CheckSpec)
    targets: tuple[TargetSpec, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        """JSON-serialisable: recorded in the run's suite.json so that a report knows what was run (a target's
        card as its ``as_dict()``; a non-square image size as written, ``"192x256"``)."""
        doc = asdict(replace(self, targets=()))
        if isinstance(self.data.image_size, ImageSize):
            doc["data"]["image_size"] = size_text(self.data.image_size)
        return {**doc, "targets": [t.as_dict() for t in self.targets]}

    @property
    def white_box_names(self) -> tuple[str, ...]:
        """Every model white-box attacks run on: the built-in models (the defended one last), then the torch
        targets."""
        return self.models.all_names + tuple(t.name for t in self.targets if t.white_box)


def default_suite_path() -> Path:
    """The built-in default suite shipped with the package (harness/suite/default.toml)."""
    return Path(str(resources.files("harness.suite") / "default.toml"))


def load_suite(path: str | os.PathLike | None = None) -> SuiteConfig:
    """Read and validate the suite file at ``path`` (None: the built-in default)."""
    builtin = path is None
    path = default_suite_path() if path is None else Path(path)
    text = read_text(path, MAX_SUITE_BYTES, "suite file ", "a short TOML text")
    return parse_suite(text, path.name, "built-in default" if builtin else str(path), path.parent)


def parse_suite(text: str, where: str = "suite", source: str = "", base: str | os.PathLike | None = None
                ) -> SuiteConfig:
    """The validated suite of TOML ``text``; ``where`` (a file name) prefixes every error message; relative
    file names of ``[[targets]]`` are taken from folder ``base`` (None: the current directory)."""
    doc = parse_toml(text, where, "a suite file")
    top = _Table(where, "", doc)
    name = top.string("name", "suite")
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name) or len(name) > MAX_NAME:
        shown = repr(name) if len(name) <= 40 else f"{name[:30]!r}... ({len(name)} characters)"
        raise top.error("name", f"{shown} must be a plain file name of at most {MAX_NAME} characters (letters, "
                                "digits, . _ -): runs/NAME is its default run directory")
    batch_size = top.integer("batch_size", 16, maximum=MAX_BATCH)
    threads = top.integer("threads", None, maximum=MAX_THREADS)
    tables = {s: _Table(where, s, top.table(s)) for s in SECTIONS}
    targets = _targets(top, where, Path.cwd() if base is None else Path(base))
    top.finish(allowed=SECTIONS)
    data = _data(tables["data"])
    models = _models(tables["models"], where, targets)
    names = models.names
    for target in targets:
        if target.name in models.all_names:
            what = "in [models] names" if target.name in names else "the name of [models] defended"
            raise HarnessError(f"{where}: {target.label} name: {target.name!r} is also {what}; "
                               "a record's model must say which of the two it measured: rename the target")
    white_box = models.all_names + tuple(t.name for t in targets if t.white_box)
    deployment = _deployment(tables["deployment"], targets)
    whitebox = _whitebox(tables["whitebox"], white_box, targets, models.defended) if "whitebox" in doc else None
    sweep = _sweep(tables["sweep"], names, targets) if "sweep" in doc else None
    square = _square(tables["square"], names, targets) if "square" in doc else None
    transfer = _transfer(tables["transfer"], names, targets) if "transfer" in doc else None
    examples = _examples(tables["examples"], white_box, whitebox) if "examples" in doc else None
    check = _check(tables["check"])
    for table in tables.values():
        table.finish()
    return SuiteConfig(name, source or where, batch_size, threads, data, models, deployment, whitebox, sweep, square,
                       transfer, examples, check, targets)


def _data(t: _Table) -> DataSpec:
    source = t.choice("source", "synthetic", DATA_SOURCES)
    root = t.string("root", None)
    if source != "synthetic" and root is None:
        raise t.error("root", f"data source {source} needs root = \"DIR\" (nothing is downloaded)")
    # A setting the source ignores would give numbers of other data than the file asks for.
    if source == "synthetic" and root is not None:
        raise t.error("root", "is read by source = \"voc\" or \"folder\" only (synthetic scenes are generated)")
    size = _image_size(t, source)
    seed = t.integer("seed", 0, minimum=0, maximum=MAX_SEED)
    if source != "synthetic" and seed != 0:
        raise t.error("seed", f"selects synthetic scenes; source = \"{source}\" has fixed images, so leave it out")
    mask_format = t.choice("mask_format", "index", MASK_FORMATS)
    if mask_format != "index" and source != "folder":
        raise t.error("mask_format", f"{mask_format!r} is read by source = \"folder\" only; source = \"{source}\" "
                                     "has index masks (255 = ignore): leave it out")
    return DataSpec(source, root, size, seed, mask_format)


def _image_size(t: _Table, source: str) -> int | ImageSize | None:
    """``image_size``: PX (an integer, or a string as the commands' --image-size) or "HxW" (e.g. "192x256"), each
    side in the bounds of harness.limits; synthetic scenes are square and at most MAX_SYNTHETIC_IMAGE_SIZE."""
    from harness.commands.common import image_size_arg  # the one parser of the commands' --image-size

    largest = MAX_SYNTHETIC_IMAGE_SIZE if source == "synthetic" else MAX_IMAGE_SIZE
    value = t.values.get("image_size")
    if value is None or (isinstance(value, int) and not isinstance(value, bool)):
        return t.integer("image_size", None, minimum=MIN_IMAGE_SIZE, maximum=largest)
    t.read.add("image_size")
    expected = (f"expected PX (an integer in [{MIN_IMAGE_SIZE}, {largest}]) or \"HEIGHTxWIDTH\" (e.g. "
                f"\"192x256\"), got {_shown(value)}")
    if not isinstance(value, str):
        raise t.error("image_size", expected)
    try:
        size = image_size_arg(value.strip())
    except argparse.ArgumentTypeError:
        raise t.error("image_size", expected) from None
    if source == "synthetic" and isinstance(size, ImageSize):
        raise t.error("image_size", f"{size}: the synthetic scenes are square; give one side (e.g. 64), or use "
                                    "source = \"voc\" or \"folder\" for non-square images")
    if max(size if isinstance(size, ImageSize) else (size,)) > largest:
        raise t.error("image_size", f"{_shown(value)}: the synthetic data is generated whole in memory, so each side "
                                    f"is at most {largest} px; larger images need source = \"voc\" or \"folder\"")
    return size


def _targets(top: _Table, where: str, base: Path) -> tuple[TargetSpec, ...]:
    """The ``[[targets]]`` tables in file order (see :class:`TargetSpec`)."""
    tables = top._get("targets")
    if tables is None:
        return ()
    if isinstance(tables, dict):
        raise top.error("targets", "write one [[targets]] table per model (an array of tables), not [targets]")
    if not isinstance(tables, list) or not all(isinstance(t, dict) for t in tables):
        raise top.error("targets", f"expected [[targets]] tables, got {_shown(tables)}")
    if len(tables) > MAX_TARGETS:
        raise top.error("targets", f"{len(tables)} [[targets]] tables; at most {MAX_TARGETS}")
    targets: list[TargetSpec] = []
    for index, values in enumerate(tables, start=1):
        target = _target(_Table(where, "", values, label=f"[[targets]] #{index}"), index, base)
        if any(t.name == target.name for t in targets):
            raise HarnessError(f"{where}: {target.label} name: {target.name!r} names an earlier [[targets]] table "
                               "too; each target needs its own name (its records' model)")
        targets.append(target)
    return tuple(targets)


def _target(t: _Table, index: int, base: Path) -> TargetSpec:
    name = t.string("name", None)
    if name is None:
        raise t.error("name", "is required: the name of this model in the records (e.g. name = \"my-unet\"); "
                              "the gate compares records by it, so it stays the same when the file changes")
    if not _TARGET_NAME.fullmatch(name) or ".." in name or len(name) > MAX_NAME:
        raise t.error("name", f"{_shown(name)} must be at most {MAX_NAME} letters, digits and . _ + - (it names "
                              "the records and the figures' files)")
    if name in MODELS:
        raise t.error("name", f"{name!r} is a built-in model's name; a target needs a name of its own")
    t.label = f"{t.label} ({name})"
    given = [key for key in TARGET_KEYS if t.values.get(key) is not None]
    if len(given) != 1:
        got = f"got {' and '.join(given)}" if given else "got none"
        raise t.error(given[-1] if given else "name", "give exactly one of onnx = \"FILE\", plan = \"FILE\" or "
                                                      f"torch = \"module:callable\" ({got})")
    kind = given[0]
    path = entry = weights = None
    if kind == "torch":
        entry = t.string("torch", None)
        assert entry is not None
        if not _ENTRY.fullmatch(entry) or len(entry) > 1000:
            raise t.error("torch", f"{_shown(entry)} is not MODULE:CALLABLE (e.g. \"mypackage.models:build\", "
                                   "a function returning the torch.nn.Module)")
        weights = t.file("weights", base)
    else:
        path = t.file(kind, base)
        if t.values.get("weights") is not None:
            raise t.error("weights", f"is read by torch = \"module:callable\" targets only (a {kind} file "
                                     "carries its weights)")
    precision = None
    if kind == "plan":
        precision = t.choice("precision", None, PRECISIONS["trt"])
        if precision is None:
            built = ", ".join(PRECISIONS["trt"])
            raise t.error("precision", f"is required for a plan: the precision it was built at ({built}), the "
                                       "records' precision")
    elif t.values.get("precision") is not None:
        raise t.error("precision", "is read by plan targets only (an ONNX file's precision is read from the file; "
                                   "its variants are [deployment] precisions)")
    card = t.file("card", base)
    t.finish()
    return TargetSpec(name, kind, index, path, entry, weights, precision, card,
                      None if card is None else _card(t, card), str(base))


def _card(t: _Table, path: str) -> Any:
    """The validated card at ``path`` (harness.targets.card.load_card), with the suite's place in its message."""
    from harness.targets.card import load_card  # the suite reads cards; a suite of built-in models needs none

    try:
        return load_card(path)
    except HarnessError as e:
        raise t.error("card", str(e)) from None


def _models(t: _Table, where: str, targets: tuple[TargetSpec, ...]) -> ModelsSpec:
    if not t.values:
        if targets:
            return ModelsSpec()  # the user's targets only: nothing to train
        raise HarnessError(f"{where}: a suite needs [models] names = [...] (of {', '.join(MODELS)}) or "
                           "[[targets]] tables (name, and onnx, plan or torch)")
    defended = _defended(t, where)
    names = t.choices("names", () if defended is not None else None, MODELS)
    epochs = t.per_model("epochs", names, positive_int=True)
    lr = t.per_model("lr", names, positive_int=False)
    return ModelsSpec(names, t.choice("size", "reduced", SIZES), epochs, lr, t.seed(),
                      t.integer("batch_size", 16, maximum=MAX_BATCH), t.integer("n_train", None, maximum=MAX_IMAGES),
                      defended)


def _defended(models: _Table, where: str) -> DefendedSpec | None:
    """``[models] defended = { model, adversarial = "pgd-K", eps, epochs, lr }`` (see :class:`DefendedSpec`)."""
    values = models._get("defended")
    if values is None:
        return None
    if not isinstance(values, dict):
        raise models.error("defended", f"expected a table such as {DEFENDED_EXAMPLE}, got {_shown(values)}")
    t = _Table(where, "models", values, label="[models] defended")
    model = t.choice("model", None, MODELS)
    if model is None:
        raise t.error("model", f"is required: the built-in model to train adversarially, e.g. {DEFENDED_EXAMPLE}")
    text = t.string("adversarial", None)
    if text is None:
        raise t.error("adversarial", "is required: the adversarial training, pgd-K (PGD with K steps per batch), "
                                     "e.g. adversarial = \"pgd-2\"")
    eps = t.eps()
    try:
        adversarial = parse_adversarial(text, eps)
    except HarnessError as e:
        raise t.error("adversarial", str(e).removeprefix(f"--adversarial {text!r}: ")) from None
    epochs = t.integer("epochs", None, maximum=MAX_EPOCHS)
    lr = t.number("lr", 0.0) or None  # 0.0: absent (a given 0 is refused below)
    if "lr" in t.values and not (lr is not None and 0 < lr < 1):
        raise t.error("lr", f"expected a learning rate in (0, 1), got {_shown(t.values['lr'])}")
    t.finish()
    return DefendedSpec(model, adversarial.steps, float(eps), epochs, lr)


def _deployment(t: _Table, targets: tuple[TargetSpec, ...]) -> DeploymentSpec:
    engines = t.choices("engines", ("torch", "ort"), ENGINES)
    precisions = t.choices("precisions", ("fp32",), tuple(PRECISIONS["ort"]))
    device = t.choice("device", None, DEVICES)
    if not targets and t.values.get("n_images") is not None:  # ignored, it would give numbers of other images
        raise t.error("n_images", "is the image count of the [[targets]]' clean evaluation, and the suite has no "
                                  "[[targets]]; the built-in models are evaluated on the deployment by [transfer], "
                                  "with its n_images")
    spec = DeploymentSpec(engines, precisions, device, t.integer("calibration_images", 64, maximum=MAX_IMAGES),
                          t.n_images(DEPLOYMENT_IMAGES))
    if not spec.pairs():
        raise t.error("precisions", f"no engine of {list(engines)} runs any of {list(precisions)}")
    return spec


def _whitebox(t: _Table, names: tuple[str, ...], targets: tuple[TargetSpec, ...], defended: DefendedSpec | None
              ) -> WhiteboxSpec:
    """``names``: every white-box model (built-in, the defended one and torch targets)."""
    if not names:
        raise t.error("columns", "white-box attacks need a PyTorch model, and the suite has none: "
                                 f"{_no_torch(targets)}")
    columns = t.strings("columns", ("fgsm", "mifgsm-20", "pgd-20", "pgd-100"))
    for column in columns:
        t.check_attack_label("columns", column)
    skip = {}
    for model, left_out in t.table("skip").items():
        if model not in names:
            raise t.error(f"skip.{model}", f"not one of the suite's models ({', '.join(names)})")
        if not isinstance(left_out, list) or any(c not in columns for c in left_out):
            raise t.error(f"skip.{model}", f"expected a list of columns of {list(columns)}, got {left_out!r}")
        skip[model] = tuple(left_out)
    defended_eps = _defended_eps(t, defended)
    defended_columns = t.strings("defended_columns", DEFENDED_COLUMNS)
    for column in defended_columns:
        t.check_attack_label("defended_columns", column)
    if not defended_eps and t.values.get("defended_columns") is not None:
        raise t.error("defended_columns", "are run at each radius of defended_eps, and there is none: add "
                                          "defended_eps = [4, 8, 12] or leave defended_columns out")
    return WhiteboxSpec(columns, t.n_images(16), t.eps(), t.seed(), skip, defended_eps, defended_columns)


def _defended_eps(t: _Table, defended: DefendedSpec | None) -> tuple[float, ...]:
    """``defended_eps``: distinct radii in (0, 255] (0-255 scale), in increasing order; () when absent."""
    value = t._get("defended_eps")
    if value is None:
        return ()
    if defended is None:
        raise t.error("defended_eps", f"runs on the defended model, and the suite has none: add [models] defended = "
                                      f"{DEFENDED_EXAMPLE} or leave defended_eps out")
    if not isinstance(value, list) or not value or len(value) > MAX_SWEEP_POINTS or any(
            isinstance(v, bool) or not isinstance(v, int | float) or not 0 < v <= 255 for v in value):
        raise t.error("defended_eps", f"expected a list of 1 to {MAX_SWEEP_POINTS} radii in (0, 255] on the 0-255 "
                                      f"scale (8 means 8/255), e.g. [4, 8, 12], got {_shown(value)}")
    if len(set(value)) != len(value):
        raise t.error("defended_eps", f"names a radius twice: {_shown(value)}")
    return tuple(sorted(float(v) for v in value))


def _sweep(t: _Table, names: tuple[str, ...], targets: tuple[TargetSpec, ...]) -> SweepSpec:
    """``names``: the built-in models; ``models`` chooses among them and the torch targets join."""
    models = t.choices("models", names[:1], names)
    if not models and not any(target.white_box for target in targets):
        raise t.error("models", f"the PGD sweep needs a PyTorch model, and the suite has none: {_no_torch(targets)}")
    steps = t.integers("steps", (20, 40, 60, 80, 100))
    if len(steps) > MAX_SWEEP_POINTS:
        raise t.error("steps", f"{len(steps)} counts; at most {MAX_SWEEP_POINTS}")
    return SweepSpec(models, tuple(sorted(steps)), t.n_images(16), t.eps(), t.seed())


def _square(t: _Table, names: tuple[str, ...], targets: tuple[TargetSpec, ...]) -> SquareSpec:
    """``names``: the built-in models; ``models`` chooses among them and every target the attack applies to joins
    (the Square Attack: those with scores; the hard-label attack: all)."""
    attack = t.choice("attack", "square", BLACKBOX_ATTACKS)
    models = t.choices("models", names[:1], names)
    if attack == "square" and not models and not any(target.has_scores for target in targets):
        raise t.error("models", "the Square Attack needs scores, and every target of the suite outputs a class "
                                "map (card output.kind = \"class_map\"): set attack = \"hardlabel\" (class maps "
                                "only) or remove [square]")
    if attack != "square":
        given = [key for key in SQUARE_ONLY_OPTIONS if t.values.get(key) is not None]
        if given:
            raise t.error(given[0], "applies to attack = \"square\"; the hard-label attack reads no scores and "
                                    "flips blocks of signs instead of squares: leave it out")
    engine = t.choice("engine", "ort", ENGINES)
    precision = t.choice("precision", "fp32", PRECISIONS[engine])
    p_init = t.number("p_init", 0.05)
    if not 0 < p_init <= 1:
        raise t.error("p_init", f"expected a fraction in (0, 1], got {p_init}")
    eps = t.eps()
    if eps < MIN_EPS:
        raise t.error("eps", f"expected at least {MIN_EPS:g}, the Square Attack's smallest eps, got {eps:g}")
    return SquareSpec(models, engine, precision, t.choices("inits", INITS, STARTS),
                      t.integer("queries", 1000, maximum=MAX_QUERIES), p_init, t.choice("loss", "ce", ORACLES), eps,
                      t.n_images(8), t.seed(), attack, t.choice("p_schedule", "paper", P_SCHEDULES),
                      t.choice("colour", "rgb", COLOURS))


def _transfer(t: _Table, names: tuple[str, ...], user: tuple[TargetSpec, ...]) -> TransferSpec:
    """``names``: the built-in models, which ``sources`` and ``targets`` choose among; every [[targets]] entry joins
    the targets, and the torch ones the sources too."""
    sources = t.choices("sources", names, names)
    targets = t.choices("targets", names, names)
    if not sources and not any(target.white_box for target in user):
        raise t.error("sources", "transferred examples are crafted on a PyTorch model, and the suite has none: "
                                 f"{_no_torch(user)}")
    attacks = t.strings("attacks", ("mifgsm-20", "pgd-20"))
    for attack in attacks:
        t.check_attack_label("attacks", attack)
    return TransferSpec(sources, targets, attacks, t.n_images(16), t.eps(), t.seed())


def _examples(t: _Table, names: tuple[str, ...], whitebox: WhiteboxSpec | None) -> ExamplesSpec:
    """``names``: every white-box model (built-in and torch targets)."""
    model = t.choice("model", names[0] if names else None, names)
    attack = t.string("attack", "pgd-20")
    if whitebox is None or model is None or attack not in whitebox.columns or attack in whitebox.skip.get(model, ()):
        raise t.error("attack", f"{attack!r} must be a [whitebox] column run on {model or 'a PyTorch model'} "
                                "(the examples are its images)")
    n = t.n_images(4)
    if n > whitebox.n_images:
        raise t.error("n_images", f"{n} is more than the {whitebox.n_images} images of [whitebox]")
    return ExamplesSpec(model, attack, n)


def _check(t: _Table) -> CheckSpec:
    tolerance = t.number("tolerance", 1.0, minimum=0.0, maximum=MAX_POINTS)
    per_attack = {}
    for attack, value in t.table("attack_tolerance").items():
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= MAX_POINTS:
            raise t.error(f"attack_tolerance.{attack}", f"expected a number of points in [0, {MAX_POINTS:g}], "
                                                        f"got {value!r}")
        per_attack[attack] = float(value)
    return CheckSpec(tolerance, per_attack)


def _no_torch(targets: tuple[TargetSpec, ...]) -> str:
    """Why the suite's targets give no white-box model, and what to do."""
    kinds = sorted({t.kind for t in targets if t.kind != "torch"})
    have = [f"its targets are {' and '.join(kinds)} files"] if kinds else []
    if any(t.kind == "torch" for t in targets):
        have.append("its torch targets output class maps (card output.kind = \"class_map\": no scores)")
    return ", ".join(have + ["add [models] names = [...] or a [[targets]] table with torch = \"module:callable\", "
                             "or remove the section"])


class _Table:
    """Typed reads of one TOML table; every read key is remembered so that ``finish`` rejects the rest.
    ``label`` names the table in messages (default ``[name]``; none for the top level)."""

    def __init__(self, where: str, name: str, values: dict[str, Any], label: str | None = None) -> None:
        self.where, self.name, self.values = where, name, values
        self.label = label if label is not None else (f"[{name}]" if name else "")
        self.read: set[str] = set()

    def error(self, key: str, message: str) -> HarnessError:
        place = f"{self.label} {key}" if self.label else key
        return HarnessError(f"{self.where}: {place}: {message}")

    def _get(self, key: str) -> Any:
        self.read.add(key)
        return self.values.get(key)

    def finish(self, allowed: tuple[str, ...] = ()) -> None:
        unknown = [k for k in self.values if k not in self.read and k not in allowed]
        if unknown:
            known = sorted(self.read | set(allowed))
            raise self.error(unknown[0], f"unknown key (known here: {', '.join(known)})")

    def table(self, key: str) -> dict[str, Any]:
        value = self._get(key)
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise self.error(key, f"expected a table, got {value!r}")
        return value

    def string(self, key: str, default: str | None) -> str | None:
        value = self._get(key)
        if value is None:
            return default
        if not isinstance(value, str) or not value:
            raise self.error(key, f"expected a non-empty string, got {value!r}")
        return value

    def file(self, key: str, base: Path) -> str | None:
        """The absolute path of an existing regular file named by ``key`` (relative to ``base``); None when absent."""
        value = self.string(key, None)
        if value is None:
            return None
        path = os.path.abspath(os.path.join(base, value))
        try:
            mode = os.stat(path).st_mode
        except (OSError, ValueError) as e:  # missing, a name too long, a NUL byte, no permission
            reason = "no such file" if isinstance(e, FileNotFoundError) else f"cannot be read ({error_line(e)})"
            raise self.error(key, f"{_shown(value)}: {reason} (relative names are taken from the suite file's "
                                  f"folder {base})") from None
        if not stat.S_ISREG(mode):
            raise self.error(key, f"{_shown(value)} is not a regular file")
        return path

    def choice(self, key: str, default: str | None, choices: tuple[str, ...] | list[str]) -> str | None:
        value = self.string(key, default)
        if value is not None and value not in choices:
            raise self.error(key, f"{value!r} is not one of {', '.join(choices)}")
        return value

    def integer(self, key: str, default: int | None, minimum: int = 1, maximum: int = MAX_IMAGES) -> int | None:
        """An integer in [minimum, maximum] (the bounds of harness.limits, as the command line's)."""
        value = self._get(key)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= maximum:
            raise self.error(key, f"expected an integer in [{minimum}, {maximum}], got {_shown(value)}")
        return value

    def n_images(self, default: int) -> int:
        return self.integer("n_images", default, maximum=MAX_IMAGES)

    def seed(self) -> int:
        return self.integer("seed", 0, minimum=0, maximum=MAX_SEED)

    def number(self, key: str, default: float, minimum: float | None = None, maximum: float | None = None) -> float:
        value = self._get(key)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int | float) or value != value \
                or abs(value) == float("inf") or (minimum is not None and value < minimum) \
                or (maximum is not None and value > maximum):
            bound = "" if minimum is None else f" >= {minimum:g}"
            bound += "" if maximum is None else f"{',' if bound else ''} <= {maximum:g}"
            raise self.error(key, f"expected a finite number{bound}, got {_shown(value)}")
        return float(value)

    def eps(self) -> float:
        eps = self.number("eps", 8.0)
        if not 0 < eps <= 255:
            raise self.error("eps", f"{eps:g} is outside (0, 255]; it is on the 0-255 pixel scale (8 means 8/255)")
        return eps

    def strings(self, key: str, default: tuple[str, ...] | None) -> tuple[str, ...]:
        value = self._get(key)
        if value is None:
            if default is None:
                raise self.error(key, "is required")
            return default
        if not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value):
            raise self.error(key, f"expected a non-empty list of strings, got {value!r}")
        if len(set(value)) != len(value):
            raise self.error(key, f"names an entry twice: {value!r}")
        return tuple(value)

    def choices(self, key: str, default: tuple[str, ...] | None, choices: tuple[str, ...] | list[str]
                ) -> tuple[str, ...]:
        values = self.strings(key, default)
        for value in values:
            if value not in choices:
                raise self.error(key, f"{value!r} is not one of {', '.join(choices)}")
        return values

    def integers(self, key: str, default: tuple[int, ...]) -> tuple[int, ...]:
        value = self._get(key)
        if value is None:
            return default
        if not isinstance(value, list) or not value or any(isinstance(v, bool) or not isinstance(v, int)
                                                           or not 1 <= v <= MAX_STEPS for v in value):
            raise self.error(key, f"expected a non-empty list of integers in [1, {MAX_STEPS}], got {_shown(value)}")
        if len(set(value)) != len(value):
            raise self.error(key, f"names a value twice: {value!r}")
        return tuple(value)

    def per_model(self, key: str, names: tuple[str, ...], positive_int: bool) -> dict[str, Any]:
        """One value for every model, or a table model -> value; {} when absent."""
        value = self._get(key)
        if value is None:
            return {}
        table = value if isinstance(value, dict) else {name: value for name in names}
        for model, v in table.items():
            if model not in names:
                raise self.error(f"{key}.{model}", f"not one of the suite's models ({', '.join(names)})")
            ok = (isinstance(v, int) and 1 <= v <= MAX_EPOCHS) if positive_int else (isinstance(v, int | float)
                                                                                     and 0 < v < 1)
            if isinstance(v, bool) or not ok:
                expected = f"an integer in [1, {MAX_EPOCHS}]" if positive_int else "a learning rate in (0, 1)"
                raise self.error(key if not isinstance(value, dict) else f"{key}.{model}",
                                 f"expected {expected}, got {v!r}")
        return {m: (int(v) if positive_int else float(v)) for m, v in table.items()}

    def check_attack_label(self, key: str, label: str) -> None:
        """``fgsm``, ``mifgsm-N`` or ``pgd-N`` (N >= 1), written as the attack's own label: the suite finds
        columns, skips and example sets by that label."""
        try:
            (attack,) = attacks_from_names([label], 8.0, key)
        except HarnessError:
            attack = None
        if attack is None or attack.label != label:
            raise self.error(key, f"{label!r} is not an attack column ({WHITEBOX_COLUMNS_HELP})")


def _shown(value: Any) -> str:
    """A TOML value for a one-line message, at most about 60 characters (a list may hold thousands of items)."""
    text = repr(value)
    return text if len(text) <= 60 else text[:50] + "..."
