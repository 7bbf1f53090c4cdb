"""Renamed `medsft.run_summary`; this name stays until notebooks/10_summary.ipynb imports the new one."""

from medsft.run_summary import (  # noqa: F401
    collect_runs,
    evaluation_summary,
    plot_accuracy,
    plot_costs,
    run_results,
    summarize,
    summary_frame,
    varied_fields,
)
