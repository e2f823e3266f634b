"""MigrationPolicy: the model, its validation, precedence, annotations. No I/O."""
