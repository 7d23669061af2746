"""khnet: Kshot-Hypernet supernets on the NAS-Bench-201 topology search space.

Train one supernet, then deploy many of its 15,625 subnets without retraining
(Zhuge et al., "Single Train Multi Deploy on Topology Search Spaces using Kshot-Hypernet", 2024).

The torch-free core (``khnet.space``, ``khnet.benchmark``) imports quickly; the network code lives in
``khnet.ops`` and ``khnet.network``.
"""

from khnet.errors import KhnetError
from khnet.space import OP_NAMES, Arch, ArchError, Cost

__version__ = "0.1.0"

__all__ = ["OP_NAMES", "Arch", "ArchError", "Cost", "KhnetError", "__version__"]
