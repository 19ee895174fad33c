"""``python -m espnet_cpu_workers <ESPnet program module> [args]``: an ESPnet program whose
multiprocessing-distributed workers run on the CPU (test helper; it never imports samplewise_rnnt).

ESPnet's launcher (``--ngpu N --multiprocessing_distributed true``) spawns N workers and gives each one
GPU (``ngpu=1``: ``model.to("cuda")``, ``torch.cuda.set_device``). The one stub: each worker's
``ngpu`` is set to 0 before ESPnet's ``AbsTask.main_worker`` runs, so it trains on the CPU (use
``--dist_backend gloo``). Everything else, the spawning included, is ESPnet's. The spawned workers
import this module again (it is their ``__mp_main__``), so they get the same stub.
"""
import runpy
import sys

from espnet2.tasks.abs_task import AbsTask

_stock_main_worker = AbsTask.__dict__["main_worker"].__func__


def main_worker(cls, args):  # the name matters: the launcher pickles cls.main_worker by name
    args.ngpu = 0
    return _stock_main_worker(cls, args)


AbsTask.main_worker = classmethod(main_worker)

if __name__ == "__main__":
    program = sys.argv[1]
    sys.argv = [program] + sys.argv[2:]
    # alter_sys=False keeps this module as sys.modules["__main__"]: the spawned workers import it again
    runpy.run_module(program, run_name="__main__", alter_sys=False)
