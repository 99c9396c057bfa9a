"""The typed IR: what a spec means, with every default filled in.

pydantic v2 models, frozen, `extra="forbid"`, strict (a string is never silently an int).
Defaults live here and nowhere else. Each node keeps its source span and the spans of its
fields (excluded from equality-relevant dumps and from the JSON Schema) so that every later
error can point at the spec.

Fields marked `structural` change the *shape* of generated code (which classes and branches
exist). When such a field has one value across all runs the code is specialised to it;
when variants or sweeps vary it, it becomes a typed config field. All other leaves are
hyperparameters and always appear in the generated config dataclasses.
"""

from __future__ import annotations

import keyword
from typing import Annotated, Any, Literal, get_args

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PlainValidator,
    SerializeAsAny,
    model_validator,
)
from pydantic.json_schema import SkipJsonSchema

from expc.compiler.source import Span
from expc.tracking_uri import server_url

IR_VERSION = 1
STRUCTURAL = {"structural": True}


def run_folders(holding: str, same_model: bool = False) -> dict[str, Any]:
    """Field metadata: the field takes run folders of other experiments whose runs hold a
    trained `holding` network (a NetworkKind, e.g. "sequence_model"). Such a field also takes
    `run("spec", "name")` references; it cannot differ between runs, and it is a config
    field of generated code even so (unless no run sets it), because `expc run` points it
    at the folder of the profile it runs. `same_model`: the referenced run's `model` block
    must equal the referring run's (its weights are loaded into this model)."""
    return {"structural": True, "run_folder": holding, "same_model": same_model}


def needs_same_model(model: type[BaseModel], field: str) -> bool:
    extra = model.model_fields[field].json_schema_extra
    return bool(extra.get("same_model")) if isinstance(extra, dict) else False


def run_folder_kind(model: type[BaseModel], field: str) -> str | None:
    extra = model.model_fields[field].json_schema_extra
    return extra.get("run_folder") if isinstance(extra, dict) else None  # type: ignore[return-value]


def input_file(
    builtin: tuple[str, ...] = (), *, folder: bool = False, suffixes: tuple[str, ...] = ()
) -> dict[str, Any]:
    """Field metadata: the field names a local input file (or a tuple of them) that a run
    reads, relative to the directory `expc run` starts in. `builtin`: values that name a
    source shipped with expc instead of a file; an empty value names nothing. `folder`: a
    folder is accepted too; `suffixes`: a file must end in one of these (as the runtime's
    loader requires). Checked before a run starts (expc/compiler/inputs.py); the metadata
    does not change generated code. With `structural`, write `{**STRUCTURAL, **input_file()}`."""
    extra: dict[str, Any] = {"input_file": True, "builtin": list(builtin)}
    if folder:
        extra["folder"] = True
    if suffixes:
        extra["suffixes"] = list(suffixes)
    return extra


def pretrained_model() -> dict[str, Any]:
    """Field metadata: the field names models of expc's registry (`expc.model_registry`),
    whose packages `expc run` checks are installed before any run starts."""
    return {"pretrained_model": True}


def names_pretrained_models(model: type[BaseModel], field: str) -> bool:
    extra = model.model_fields[field].json_schema_extra
    return isinstance(extra, dict) and bool(extra.get("pretrained_model"))


def input_file_builtins(model: type[BaseModel], field: str) -> tuple[str, ...] | None:
    """The built-in values of an input-file field (see `input_file`); None when the field
    does not name input files."""
    extra = model.model_fields[field].json_schema_extra
    if not isinstance(extra, dict) or not extra.get("input_file"):
        return None
    return tuple(extra.get("builtin") or ())  # type: ignore[arg-type]


def input_file_rules(model: type[BaseModel], field: str) -> tuple[bool, tuple[str, ...]]:
    """(a folder is accepted, the suffixes a file needs) of an input-file field."""
    extra = model.model_fields[field].json_schema_extra
    if not isinstance(extra, dict):
        return False, ()
    return bool(extra.get("folder")), tuple(extra.get("suffixes") or ())  # type: ignore[arg-type]


def _identifier(name: str) -> str:
    if keyword.iskeyword(name) or name.startswith("__"):
        raise ValueError(f"`{name}` is reserved in Python and cannot name an experiment")
    return name


# Experiment names become Python package and directory names.
ExperimentName = Annotated[
    str,
    Field(pattern=r"^[a-z][a-z0-9_]{0,63}$"),
    AfterValidator(_identifier),
]
# Variant, sweep and profile names become run-directory names and dict keys.
RunName = Annotated[str, Field(pattern=r"^[A-Za-z][A-Za-z0-9_]{0,63}$")]
PositiveInt = Annotated[int, Field(ge=1)]


class Node(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    span: SkipJsonSchema[Span | None] = Field(default=None, exclude=True, repr=False)
    field_spans: SkipJsonSchema[dict[str, Span]] = Field(
        default_factory=dict, exclude=True, repr=False
    )

    def span_of(self, field: str) -> Span | None:
        return self.field_spans.get(field, self.span)


# Fields the lowering fills in itself; a spec cannot write them.
INTERNAL_FIELDS = frozenset({"span", "field_spans"})


# --- experiment --------------------------------------------------------------------------


def _seeds(value: Any) -> int | tuple[int, ...]:
    """A count of seeds (1 to 1000) or a list of distinct seeds, one message either way."""
    if isinstance(value, int) and not isinstance(value, bool):
        if not 1 <= value <= 1000:
            raise ValueError(f"a count of seeds is from 1 to 1000, got {value}")
        return value
    if isinstance(value, tuple) and 1 <= len(value) <= 1000:
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
            raise ValueError("seeds are whole numbers")
        if any(not 0 <= v <= 2**63 - 1 for v in value):
            raise ValueError(f"a seed is from 0 to {2**63 - 1}")
        if len(set(value)) != len(value):
            raise ValueError("seeds are listed twice; each seed is one run")
        return value
    raise ValueError("`seeds` is a count (3) or a list of seeds ([0, 1, 2]), 1 to 1000 of them")


Seed = Annotated[int, Field(ge=0, le=2**63 - 1)]


class Experiment(Node):
    """`experiment NAME { ... }`: identity and seed; `seeds` trains every run once per
    seed (`seeds = 3`: seed, seed + 1, seed + 2; or a list of seeds)."""

    name: ExperimentName
    description: str = ""
    seed: Seed = 0
    seeds: Annotated[int | tuple[int, ...], PlainValidator(_seeds)] = 1

    @model_validator(mode="after")
    def _seeds_fit(self) -> Experiment:
        if isinstance(self.seeds, int) and self.seed + self.seeds - 1 > 2**63 - 1:
            raise ValueError(f"seed + seeds - 1 must be at most {2**63 - 1}")
        return self

    def seed_list(self) -> tuple[int, ...]:
        """The seeds each run trains with; (seed,) when the spec asks for one."""
        if isinstance(self.seeds, tuple):
            return self.seeds
        return tuple(range(self.seed, self.seed + self.seeds))


class Config(Node):
    """One fully resolved experiment configuration (one run).

    Each objective's config class is assembled from the components that fit it
    (expc/compiler/components/registry.py); the spec's `objective` kind selects it.
    """


# --- variants, sweeps, profiles, runs ----------------------------------------------------


class Override(Node):
    """`path = value` inside a variant, profile or `--set`."""

    path: tuple[str, ...]
    value: Any


class Variant(Node):
    name: RunName
    overrides: tuple[Override, ...]


class SweepAxis(Node):
    path: tuple[str, ...]
    values: tuple[Any, ...]


class Sweep(Node):
    """`sweep NAME { path = [v1, v2] ... }`: the cartesian product of its axes."""

    name: RunName
    axes: tuple[SweepAxis, ...]


class Profile(Node):
    """`profile NAME { ... }`: overrides selected at run time (`--profile`, `--smoke`)."""

    name: RunName
    overrides: tuple[Override, ...]


# `--smoke` when a spec defines no `profile smoke` (an objective may define its own): a
# seconds-long run that still evaluates.
DEFAULT_SMOKE = (
    Override(path=("train", "steps"), value=20),
    Override(path=("train", "eval_every"), value=10),
    Override(path=("train", "eval_batches"), value=2),
)


# --- where runs execute, where results go (the runner's, not the generated code's) ---------


class LaunchLocal(Node):
    """`launch local { ... }`: runs on this machine (the default)."""

    kind: Literal["local"] = "local"
    cpus: Annotated[int, Field(ge=1, le=4096)] | None = None  # threads per run


class LaunchRay(Node):
    """`launch ray { address = "..." }`: each run a Ray task; a local Ray without address."""

    kind: Literal["ray"] = "ray"
    address: Annotated[str, Field(min_length=1)] | None = None
    cpus: Annotated[int, Field(ge=1, le=4096)] | None = None  # per run (num_cpus)
    gpus: Annotated[int, Field(ge=0, le=1024)] | None = None  # per run (num_gpus)
    retries: Annotated[int, Field(ge=0, le=100)] = 0  # a run whose worker died resumes


class LaunchSlurm(Node):
    """`launch slurm { partition = "gpu" time = 120 ... }`: one job array through submitit."""

    kind: Literal["slurm"] = "slurm"
    partition: Annotated[str, Field(min_length=1)] | None = None
    time: Annotated[int, Field(ge=1, le=525600)] = 60  # minutes
    cpus: Annotated[int, Field(ge=1, le=4096)] | None = None  # per run (cpus_per_task)
    gpus: Annotated[int, Field(ge=0, le=1024)] | None = None  # per run (gpus_per_node)
    mem_gb: Annotated[int, Field(ge=1, le=1048576)] | None = None
    account: Annotated[str, Field(min_length=1)] | None = None
    qos: Annotated[str, Field(min_length=1)] | None = None
    constraint: Annotated[str, Field(min_length=1)] | None = None
    array_parallelism: Annotated[int, Field(ge=1, le=100000)] = 256
    setup: tuple[str, ...] = ()  # shell lines before each job (`module load cuda`)
    folder: Annotated[str, Field(min_length=1)] | None = None  # submitit's logs
    # submitit's executor: `local` runs the array as processes here (no cluster needed).
    executor: Literal["slurm", "local"] = "slurm"


LAUNCHERS: dict[str, type[Node]] = {"local": LaunchLocal, "ray": LaunchRay, "slurm": LaunchSlurm}


def _tracking_uri(value: str) -> str:
    server_url(value)  # a ValueError names the accepted forms
    return value


class Tracking(Node):
    """`tracking { uri = "mlflow://127.0.0.1:5000" }`: every run logged to MLflow too."""

    uri: Annotated[str, AfterValidator(_tracking_uri)]
    # While runs train, what they logged so far is sent this often (and at each run's end).
    sync_every_s: Annotated[float, Field(ge=1, le=86400)] = 10.0


class Reference(Node):
    """`run("spec", "name")` in a run-folder field: a run of another experiment."""

    spec: str  # the referenced spec as diagnostics show it
    path: str  # its absolute path, for `expc run` to build it
    experiment: str
    run: str
    field: tuple[str | int, ...]  # where the folder goes: ("model", "checkpoints", 0)
    # The referenced run's model block (without spans), for fields that load its weights.
    model: dict[str, Any] = Field(default_factory=dict, repr=False)
    # A run of a spec with several seeds reads the referenced run trained with its own seed
    # (`vanilla` -> `vanilla-seed_1338`): replicates of a pipeline are independent end to
    # end, so an interval over them includes the upstream training's noise.
    seed: int | None = None

    @property
    def run_name(self) -> str:
        """The upstream run's folder name: `run`, or `run` at `seed`."""
        if self.seed is None:
            return self.run
        return seeded_run_name(self.run, self.seed)


def seeded_run_name(name: str, seed: int) -> str:
    """A run's name for one of several seeds: `gated-seed_2`; `seed_2` for `main`."""
    return f"{name}-seed_{seed}" if name != "main" else f"seed_{seed}"


class Run(Node):
    """One job: the base config with a variant and/or sweep point applied."""

    name: str
    overrides: tuple[Override, ...]
    config: SerializeAsAny[Config]
    upstream: tuple[Reference, ...] = ()  # runs of other experiments this one reads


class Spec(Node):
    """A whole compiled spec: the base config, its variants/sweeps/profiles, and every run."""

    ir_version: int = IR_VERSION
    source: str
    sha256: str
    extends: tuple[str, ...] = ()  # the specs it builds on (`extends`), furthest first
    config: SerializeAsAny[Config]
    variants: tuple[Variant, ...] = ()
    sweeps: tuple[Sweep, ...] = ()
    profiles: tuple[Profile, ...] = ()
    runs: tuple[Run, ...]
    launch: LaunchLocal | LaunchRay | LaunchSlurm | None = None
    tracking: Tracking | None = None

    def profile(self, name: str) -> Profile | None:
        for profile in self.profiles:
            if profile.name == name:
                return profile
        return None


def roles(kinds: str) -> dict[str, Any]:
    """Field metadata: the field applies only when its component is used as one of these
    kinds: a family as a kind of network (a transformer's `patch` only as an image
    denoiser), a data source as a kind of data (arithmetic's `context` only as text)."""
    return {"roles": tuple(kinds.split())}


def applies(model: type[BaseModel], field: str, used_as: frozenset[str] | None) -> bool:
    """Whether a field means anything for a component used as `used_as` (the objective's
    network kind and data kind; None: every field applies)."""
    extra = model.model_fields[field].json_schema_extra
    only = extra.get("roles") if isinstance(extra, dict) else None
    return used_as is None or not only or bool(used_as & set(only))  # type: ignore[arg-type]


def labelled_choices(annotation: Any) -> dict[str, type[Node]]:
    """label -> class for a field that holds one of several kinds of block, written with a
    label as at the top level (`finetune { data arithmetic { ... } }`); {} otherwise."""

    def members(tp: Any) -> list[type[Node]]:
        if isinstance(tp, type):
            return [tp] if issubclass(tp, Node) else []
        return [m for arg in get_args(tp) for m in members(arg)]

    found: dict[str, type[Node]] = {}
    candidates = members(annotation) if not isinstance(annotation, type) else []
    for member in candidates:
        if "kind" in member.model_fields:
            kinds = get_args(member.model_fields["kind"].annotation)
            found.update(dict.fromkeys((k for k in kinds if isinstance(k, str)), member))
    return found


def block_class(annotation: Any) -> type[Node] | None:
    """The block class of a field written as a nested block: `Attention`, or the `X` of an
    optional block `X | None` (a stage the spec may leave out); None for a value field."""
    if isinstance(annotation, type):
        return annotation if issubclass(annotation, Node) else None
    members = [a for a in get_args(annotation) if a is not type(None)]
    if len(members) == 1 and isinstance(members[0], type) and issubclass(members[0], Node):
        return members[0]
    return None


def is_structural(model: type[BaseModel], field: str) -> bool:
    extra = model.model_fields[field].json_schema_extra
    return isinstance(extra, dict) and bool(extra.get("structural"))


def user_fields(model: type[BaseModel]) -> list[str]:
    return [name for name in model.model_fields if name not in INTERNAL_FIELDS]
