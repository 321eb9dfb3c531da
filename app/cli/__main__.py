"""`python -m app.cli ...`: the CLI without the console script.

The guard matters beyond style: vLLM starts its engine core as a child
process that re-imports the main module, and `inferq worker` runs here.
"""

from app.cli import main

if __name__ == "__main__":
    main()
