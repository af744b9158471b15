"""Output: tables, JSON/CSV, plots and the HTML report."""
