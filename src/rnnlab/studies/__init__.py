"""Studies that show, on data the project generates, why gates and recurrence matter (issue #20, WIP)."""
