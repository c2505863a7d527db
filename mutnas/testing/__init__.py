"""Testing tools shipped to users: consistency checks and Hypothesis strategies.

``mutnas.testing.strategies`` (graphs, mutations, utilities) imports Hypothesis;
``mutnas.testing.checks`` does not.
"""

from mutnas.testing.checks import check_change, check_consistent

__all__ = ["check_change", "check_consistent"]
