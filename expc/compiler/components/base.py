"""What a component is: an architecture, a data source, an objective, and their sections.

A spec is a point in a product of independent axes: `model FAMILY` (an architecture),
`data KIND` (a data source), `objective KIND` and `target DEVICE`. Each component declares
what it is, and the compiler combines them by those declarations alone:

- an architecture *provides* kinds of network (a sequence model over tokens, a vector
  encoder, an image denoiser, a set of generators to sample);
- a data source *yields* kinds of data (text, verifiable problems, environments, images,
  prompts);
- an objective *needs* one kind of network and *consumes* one kind of data.

So `objective diffusion` takes every family that provides an image denoiser and every data
kind that yields images, and which combinations exist is one table (`registry.fits`), not a
rule per objective. Every component owns its IR node, its cross-field rules, the structural
fields its templates can vary per run, its templates and its metrics.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

from expc.compiler import ir
from expc.compiler.diagnostics import Diagnostic

RunRule = Callable[[Any], Iterator[Diagnostic]]  # one resolved run's Config
SpecRule = Callable[[ir.Spec], Iterator[Diagnostic]]  # the whole spec
Path = tuple[str, ...]

# What a network is for; an objective needs one of these.
NetworkKind = Literal["sequence_model", "vector_encoder", "image_denoiser", "generators"]
NETWORK_TEXT: dict[str, str] = {
    "sequence_model": "a sequence model over tokens",
    "vector_encoder": "a vector encoder",
    "image_denoiser": "an image denoiser",
    "generators": "a set of text generators to sample",
}
# What data is; an objective consumes one of these.
DataYield = Literal["text", "problems", "environments", "images", "prompts"]
YIELD_TEXT: dict[str, str] = {
    "text": "text",
    "problems": "verifiable problems",
    "environments": "goal-conditioned environments",
    "images": "images",
    "prompts": "prompts",
}


@dataclass(frozen=True, eq=False)  # compared and hashed by identity
class Architecture:
    """`model FAMILY { ... }`.

    templates: network kind -> {generated file name: template}: the files this family
    writes when an objective uses it as that kind of network (a transformer is a
    `model.py` of a language model, or of a DiT-style denoiser).
    metrics: metrics the family measures wherever it runs (the transformer's probe).
    extra_templates: files added for some specs (the Triton gate kernel when a run asks).
    """

    family: str
    node: type[ir.Node]
    provides: dict[str, dict[str, str]]
    run_rules: tuple[RunRule, ...] = ()
    spec_rules: tuple[SpecRule, ...] = ()
    variable_structure: frozenset[Path] = frozenset()
    metrics: dict[str, str] = field(default_factory=dict)
    extra_templates: Callable[[Any], dict[str, str]] = field(default=lambda spec: {})


@dataclass(frozen=True, eq=False)  # compared and hashed by identity
class DataSource:
    """`data KIND { ... }`: one IR node may serve several labels (`shapes`, `images`)."""

    kinds: tuple[str, ...]
    node: type[ir.Node]
    yields: frozenset[str]
    run_rules: tuple[RunRule, ...] = ()
    variable_structure: frozenset[Path] = frozenset()


@dataclass(frozen=True)
class TargetSupport:
    """Which `target` settings an objective's generated code implements, and which of them
    its templates can vary between runs of one spec."""

    precision: tuple[str, ...] = ("fp32",)
    compile: tuple[bool, ...] = (False,)
    kernels: tuple[str, ...] = ("eager",)
    strategy: tuple[str, ...] = ("single",)
    # The spec paths of the batch sizes each DDP rank splits (`train.batch_size`).
    ddp_batch: tuple[Path, ...] = ()
    variable: frozenset[str] = frozenset()  # target fields that may differ between runs
    # `ensemble`: the runs that differ only in `Objective.ensemble_fields` may train as one
    # vectorized ensemble (the template emits `train_ensemble`).
    ensemble: bool = False


@dataclass(frozen=True, eq=False)  # compared and hashed by identity
class Objective:
    """`objective KIND { ... }`: the loss, the step, the evaluation, the metrics, the report.

    sections: the objective's own blocks besides experiment/data/model/objective/target
    (`train`, `eval`): block name -> IR class. templates: generated file name -> template.
    """

    kind: str
    node: type[ir.Node]
    needs: str  # a NetworkKind
    consumes: str  # a DataYield
    sections: dict[str, type[ir.Node]]
    metrics: dict[str, str]
    default_metrics: tuple[str, ...]
    templates: dict[str, str]
    target: TargetSupport = TargetSupport()
    # The run-config paths (`seed`, `train.lr`, a whole section `eval`) in which the members
    # of one ensemble may differ; every other value is the ensemble's shared structure.
    ensemble_fields: tuple[str, ...] = ()
    run_rules: tuple[RunRule, ...] = ()
    spec_rules: tuple[SpecRule, ...] = ()
    variable_structure: frozenset[Path] = frozenset()
    # "module:function" in expc.runtime: (experiment_dir) -> list of report.md lines.
    report: str | None = None
    # Config fields the report reads from config.json (dotted spec paths): kept in the
    # generated config even when no generated code reads them.
    report_reads: tuple[str, ...] = ()
    # `--smoke` for a spec without its own `profile smoke`: a seconds-long run.
    smoke: tuple[ir.Override, ...] = ir.DEFAULT_SMOKE
    # A data block the spec may leave out (hivemind's built-in prompts).
    default_data: ir.Node | None = None
    # Whether the objective trains (a hivemind measurement only samples).
    trains: bool = True
    # Whether its evaluation runs the architecture's probe, so the family's own metrics
    # (first-token attention, ...) can be asked for.
    measures_architecture: bool = False


@dataclass(frozen=True)
class Section:
    """A top-level block of a spec: `name [label] { ... }`.

    label: the IR field the block's label sets (`data text` sets `data.kind`), or None when
    the block takes no label. kinds: label -> IR class for blocks whose label picks the
    class; None when the class is the Config field's own annotation.
    """

    label: str | None = None
    required_label: bool = False
    kinds: dict[str, type[ir.Node]] | None = None
