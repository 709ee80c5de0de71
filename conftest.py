"""pytest configuration for the whole checkout.

The package's doctests run with the tests (pyproject: --doctest-modules over rollwise/). The verl
plug-in's module subclasses verl's classes at import, so without verl installed (it is an optional
extra) it is left out of doctest collection instead of failing it; tests/integrations/test_verl.py skips then.
"""

import importlib.util

collect_ignore = []
if importlib.util.find_spec("verl") is None or importlib.util.find_spec("transfer_queue") is None:
    collect_ignore.append("rollwise/integrations/verl.py")
