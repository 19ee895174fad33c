from . import _main_write_wrapper

_main_write_wrapper()
