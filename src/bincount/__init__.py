"""bincount: count the objects in photos of warehouse bins."""

from bincount.errors import BincountError

__all__ = ["BincountError"]
__version__ = "0.1.0"
