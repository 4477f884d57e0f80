"""Built-in controllers (SPEC 5), one module each; also the examples users copy.

Every controller is a :class:`g2gsim.kernel.Controller`: it declares its period and the
peers it needs (:meth:`dependencies`), subscribes to their mailboxes in :meth:`start`,
returns commands from :meth:`control` and forgets everything in :meth:`reset`.

Each module also defines the controller's scenario section and registers it
(:func:`~g2gsim.controllers.base.register_controller`), so importing this package makes
every built-in ``type`` available to scenario files.
"""

from g2gsim.controllers.base import BuildContext, ControllerSection, register_controller
from g2gsim.controllers.batching import FeasibleBatches, nearest_batch
from g2gsim.controllers.budget import (
    Budget,
    BudgetFollower,
    BudgetSchedule,
    BudgetSection,
    BudgetSource,
    ConstantBudget,
    GridOperator,
    GridOperatorSection,
    ScheduledBudget,
)
from g2gsim.controllers.load_shift import (
    LoadShiftConfig,
    LoadShiftController,
    LoadShiftSection,
    Shift,
    SiteView,
    plan_shifts,
)
from g2gsim.controllers.noop import Noop, NoopSection
from g2gsim.controllers.ofo import LogisticCurves, OFOBatchController, OFOConfig, OFOSection
from g2gsim.controllers.power_budget import PowerBudgetConfig, PowerBudgetController, PowerBudgetSection
from g2gsim.controllers.proportional_curtailment import ProportionalCurtailment, ProportionalCurtailmentSection
from g2gsim.controllers.rule_based import RuleBasedConfig, RuleBasedController, RuleBasedSection, regulator_zone
from g2gsim.controllers.schedules import (
    BatchSchedule,
    BatchScheduleController,
    BatchScheduleSection,
    BatchSizeChange,
    TapPosition,
    TapSchedule,
    TapScheduleController,
    TapScheduleSection,
)
from g2gsim.controllers.storage_droop import (
    DroopStorage,
    StorageDroopConfig,
    StorageDroopController,
    StorageDroopSection,
    droop_output,
)

__all__ = [
    "BatchSchedule",
    "BatchScheduleController",
    "BatchScheduleSection",
    "BatchSizeChange",
    "Budget",
    "BudgetFollower",
    "BudgetSchedule",
    "BudgetSection",
    "BudgetSource",
    "BuildContext",
    "ConstantBudget",
    "ControllerSection",
    "DroopStorage",
    "FeasibleBatches",
    "GridOperator",
    "GridOperatorSection",
    "LoadShiftConfig",
    "LoadShiftController",
    "LoadShiftSection",
    "LogisticCurves",
    "Noop",
    "NoopSection",
    "OFOBatchController",
    "OFOConfig",
    "OFOSection",
    "PowerBudgetConfig",
    "PowerBudgetController",
    "PowerBudgetSection",
    "ProportionalCurtailment",
    "ProportionalCurtailmentSection",
    "RuleBasedConfig",
    "RuleBasedController",
    "RuleBasedSection",
    "ScheduledBudget",
    "Shift",
    "SiteView",
    "StorageDroopConfig",
    "StorageDroopController",
    "StorageDroopSection",
    "TapPosition",
    "TapSchedule",
    "TapScheduleController",
    "TapScheduleSection",
    "droop_output",
    "nearest_batch",
    "plan_shifts",
    "register_controller",
    "regulator_zone",
]
