"""Experiments: a YAML spec (:mod:`deploy.experiment.spec`) run on a cluster
(:mod:`deploy.experiment.runner`, ``raftlab run``), in the simulator
(:mod:`deploy.experiment.simrun`, ``raftlab sim SPEC``) or over many seeds
(:mod:`deploy.experiment.campaign`, ``raftlab campaign``), each writing one run directory
in the format of docs/formats.md. docs/experiments.md is the guide."""

from deploy.experiment.spec import (
    FAULT_KINDS,
    ExperimentSpec,
    FaultEntry,
    Model,
    SpecError,
    WorkloadPlan,
    load_spec,
    parse_spec,
)

__all__ = [
    "FAULT_KINDS",
    "ExperimentSpec",
    "FaultEntry",
    "Model",
    "SpecError",
    "WorkloadPlan",
    "load_spec",
    "parse_spec",
]
