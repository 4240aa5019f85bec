"""From a study's rows and predictions to what a reviewer reads: analysis that returns
data (analysis, verdict, breakdown, probe_tables), then rendering (table, study_report,
ladder, plots) and W&B (tracking, wandb_tables, wandb_artifacts, wandb_report)."""
