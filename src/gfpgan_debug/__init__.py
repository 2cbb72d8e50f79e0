"""gfpgan-debug: reproduce, step by step, a GFPGAN export that silently ran on untrained weights."""
from gfpgan_debug.compat import install_basicsr_alias

install_basicsr_alias()

__version__ = "0.1.0"
