"""expc: a compiler for machine-learning experiments.

Pipeline: .exp text -> (grammar) parse tree -> (compiler) typed IR -> (templates) generated
PyTorch code -> (runtime) runs/. See README.md.
"""

__version__ = "0.1.0"
