"""Built-in controllers (SPEC 5), one module each; also the examples users copy.

Every controller is a :class:`g2gsim.kernel.Controller`: it declares its period and the
peers it needs (:meth:`dependencies`), subscribes to their mailboxes in :meth:`start`,
returns commands from :meth:`control` and forgets everything in :meth:`reset`.
"""

from g2gsim.controllers.batching import FeasibleBatches, nearest_batch
from g2gsim.controllers.budget import (
    Budget,
    BudgetSchedule,
    BudgetSource,
    ConstantBudget,
    GridOperator,
    ScheduledBudget,
)
from g2gsim.controllers.load_shift import LoadShiftConfig, LoadShiftController, Shift, SiteView, plan_shifts
from g2gsim.controllers.noop import Noop
from g2gsim.controllers.ofo import LogisticCurves, OFOBatchController, OFOConfig
from g2gsim.controllers.power_budget import PowerBudgetConfig, PowerBudgetController, ProportionalCurtailment
from g2gsim.controllers.rule_based import RuleBasedConfig, RuleBasedController, regulator_zone
from g2gsim.controllers.schedules import (
    BatchSchedule,
    BatchScheduleController,
    BatchSizeChange,
    TapPosition,
    TapSchedule,
    TapScheduleController,
)
from g2gsim.controllers.storage_droop import DroopStorage, StorageDroopConfig, StorageDroopController, droop_output

__all__ = [
    "BatchSchedule",
    "BatchScheduleController",
    "BatchSizeChange",
    "Budget",
    "BudgetSchedule",
    "BudgetSource",
    "ConstantBudget",
    "DroopStorage",
    "FeasibleBatches",
    "GridOperator",
    "LoadShiftConfig",
    "LoadShiftController",
    "LogisticCurves",
    "Noop",
    "OFOBatchController",
    "OFOConfig",
    "PowerBudgetConfig",
    "PowerBudgetController",
    "ProportionalCurtailment",
    "RuleBasedConfig",
    "RuleBasedController",
    "ScheduledBudget",
    "Shift",
    "SiteView",
    "StorageDroopConfig",
    "StorageDroopController",
    "TapPosition",
    "TapSchedule",
    "TapScheduleController",
    "droop_output",
    "nearest_batch",
    "plan_shifts",
    "regulator_zone",
]
