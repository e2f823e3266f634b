"""The KubeVirt feature gates that change what a MigrationPolicy may set."""

MIGRATION_STALL_DETECTION = "MigrationStallDetection"
MIGRATION_DOWNTIME_TUNING = "MigrationDowntimeTuning"

KNOWN_FEATURE_GATES = frozenset({MIGRATION_STALL_DETECTION, MIGRATION_DOWNTIME_TUNING})
