"""The evidence users need, apart from the library and the recipe: `compare` runs variants x seeds from
the same initial policy, `summary` computes each variant's cost (steps, rollouts, tokens, seconds) to a
target accuracy, `plots` draws the curves, `report` writes report.md / report.html."""
