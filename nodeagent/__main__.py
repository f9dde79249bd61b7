"""`python -m nodeagent` is `qubits agent`: this process becomes the command line's (the agent sits a
floor below the CLI, so it hands over to it instead of importing it)."""

import os
import sys

os.execv(sys.executable, [sys.executable, "-m", "qubits.cli", "agent", *sys.argv[1:]])
