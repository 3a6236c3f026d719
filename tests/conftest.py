import os
import sys

# Tests import small shared helpers (hub_helpers, fixture writers) from this folder.
sys.path.insert(0, os.path.dirname(__file__))
