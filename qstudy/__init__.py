"""qstudy: Ray-distributed hyperparameter studies of Superpositional Gradient Descent.

The optimizer (`qstudy.optim`) and the circuits (`qstudy.quantum`) depend on torch and
qiskit only; everything that touches Ray, DeepSpeed or MLflow is imported lazily by the
command that needs it.
"""

from qstudy.errors import QStudyError

__version__ = "0.1.0"
__all__ = ["QStudyError", "__version__"]
