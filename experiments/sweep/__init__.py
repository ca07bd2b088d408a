"""`stw sweep`: the Optuna driver (driver.py), its command line (cli.py), the parent run's report (report.py) and
the search space as data (space.py with search_space.yaml)."""
