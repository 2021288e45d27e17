"""`lada bench`: the paper's comparison (hosts × methods × scenarios × seeds), tables, plots."""
