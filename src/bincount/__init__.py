"""bincount: count the objects in photos of warehouse bins."""

from bincount import threads
from bincount.errors import BincountError

threads.apply()  # before torch loads OpenMP: threads that wait sleep instead of spinning

__all__ = ["BincountError"]
__version__ = "0.1.0"
